package dav

import (
	"bytes"
	"errors"
	"io"
	"net/url"
	"slices"
	"strings"
	"testing"
)

func decodeAll(t *testing.T, doc string) ([]FileInfo, error) {
	t.Helper()
	base, _ := url.Parse("http://127.0.0.1/repo/")
	w := &WebDAV{HTTPReader: &HTTPReader{base: base}}
	var out []FileInfo
	err := w.decodeMultistatus(strings.NewReader(doc), "", func(fi FileInfo) error {
		out = append(out, fi)
		return nil
	})
	return out, err
}

// An answer as Apache mod_dav writes it: a prefix per response, a 404 propstat for the
// property a folder lacks.
func TestMultistatusApache(t *testing.T) {
	doc := `<?xml version="1.0" encoding="utf-8"?>
<D:multistatus xmlns:D="DAV:" xmlns:ns0="DAV:">
<D:response xmlns:lp1="DAV:" xmlns:lp2="http://apache.org/dav/props/" xmlns:g0="DAV:">
<D:href>/repo/blobs/</D:href>
<D:propstat><D:prop><lp1:resourcetype><D:collection/></lp1:resourcetype></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat>
<D:propstat><D:prop><g0:getcontentlength/></D:prop><D:status>HTTP/1.1 404 Not Found</D:status></D:propstat>
</D:response>
<D:response xmlns:lp1="DAV:">
<D:href>/repo/blobs/a%20b</D:href>
<D:propstat><D:prop><lp1:resourcetype/><lp1:getcontentlength>4028</lp1:getcontentlength></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat>
</D:response>
<D:response xmlns:lp1="DAV:"><D:href>/elsewhere/x</D:href></D:response>
</D:multistatus>`
	got, err := decodeAll(t, doc)
	if err != nil {
		t.Fatal(err)
	}
	want := []FileInfo{{Name: "blobs", IsDir: true}, {Name: "blobs/a b", Size: 4028}}
	if !slices.Equal(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

// The default namespace, comments, CDATA (with brackets inside), entities and character
// references, and text interrupted by a child element.
func TestMultistatusSyntax(t *testing.T) {
	doc := `<?xml version="1.0"?><!-- a - comment --><multistatus xmlns="DAV:">
<response><href>/repo/<![CDATA[x]]]]><![CDATA[>]]>&amp;&#x41;&#66;<other>ignored</other>&lt;</href>
<propstat><prop><getcontentlength> 12 </getcontentlength></prop><status>HTTP/1.1 200 OK</status></propstat></response>
<x:response xmlns:x="urn:other"><href>/repo/not-dav</href></x:response>
</multistatus>`
	got, err := decodeAll(t, doc)
	if err != nil {
		t.Fatal(err)
	}
	want := []FileInfo{{Name: "x]]>&AB<", Size: 12}}
	if !slices.Equal(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

// Text up to the token bound is read; one text node, comment or response past it is
// refused before it is held in memory.
func TestMultistatusTokenBound(t *testing.T) {
	doc := func(n int) string {
		return `<multistatus xmlns="DAV:"><x>` + strings.Repeat(" ", n) + `</x><response><href>/repo/a&amp;b</href></response></multistatus>`
	}
	got, err := decodeAll(t, doc(msMaxToken-8<<10))
	if err != nil {
		t.Fatal(err)
	}
	if want := []FileInfo{{Name: "a&b"}}; !slices.Equal(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for name, d := range map[string]string{
		"text":     doc(1 << 20),
		"comment":  `<multistatus xmlns="DAV:"><!--` + strings.Repeat("<>", 1<<19) + `--></multistatus>`,
		"response": `<multistatus xmlns="DAV:"><response><href>/repo/a</href>` + strings.Repeat("<x/>", 1<<18) + `</response></multistatus>`,
	} {
		if _, err := decodeAll(t, d); err == nil || !strings.Contains(err.Error(), "over 65536 bytes") {
			t.Errorf("%s over the bound: %v", name, err)
		}
	}
}

func TestMultistatusRefused(t *testing.T) {
	for name, doc := range map[string]string{
		"doctype":       `<!DOCTYPE x [<!ENTITY a "b">]><multistatus xmlns="DAV:"/>`,
		"unknown":       `<multistatus xmlns="DAV:">&nbsp;</multistatus>`,
		"bad char ref":  `<multistatus xmlns="DAV:">&#0;</multistatus>`,
		"mismatch":      `<a><b></a></b>`,
		"unclosed":      `<multistatus xmlns="DAV:"><response>`,
		"open entity":   `<a>&amp</a>`,
		"attr no value": `<a b></a>`,
		"attr unquoted": `<a b=c></a>`,
		"attr <":        `<a b="<"></a>`,
		"comment --":    `<!-- a -- b --><a/>`,
		"deep":          strings.Repeat("<a>", msMaxDepth+1),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := decodeAll(t, doc); !errors.Is(err, errMultistatus) {
				t.Fatalf("got %v, want a PROPFIND answer error", err)
			}
		})
	}
}

// An error from the callback stops the read and comes back unchanged.
func TestMultistatusCallbackError(t *testing.T) {
	base, _ := url.Parse("http://127.0.0.1/repo/")
	w := &WebDAV{HTTPReader: &HTTPReader{base: base}}
	stop := errors.New("enough")
	doc := `<multistatus xmlns="DAV:"><response><href>/repo/a</href></response><response><href>/repo/b</href></response></multistatus>`
	n := 0
	err := w.decodeMultistatus(bytes.NewReader([]byte(doc)), "", func(FileInfo) error { n++; return stop })
	if err != stop || n != 1 {
		t.Fatalf("err %v after %d entries, want the callback's error after 1", err, n)
	}
}

// One response with a flood of propstats is refused when it passes the token bound, not
// held in memory (a short one with too many propstats is refused by count).
func TestMultistatusPropstatFlood(t *testing.T) {
	head := `<?xml version="1.0"?><D:multistatus xmlns:D="DAV:"><D:response><D:href>/x</D:href>`
	flood := &repeatReader{unit: []byte(`<D:propstat/>`), left: 10_000_000}
	body := io.MultiReader(strings.NewReader(head), flood)
	w := &WebDAV{HTTPReader: &HTTPReader{base: &url.URL{Path: "/"}}}
	err := w.decodeMultistatus(body, "", func(FileInfo) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "over 65536 bytes") {
		t.Fatalf("want the flood refused, got %v", err)
	}
	if flood.left < 9_000_000 {
		t.Fatalf("read %d propstats before refusing", 10_000_000-flood.left)
	}
}

// repeatReader yields unit left times without holding them all.
type repeatReader struct {
	unit []byte
	left int
	off  int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) && r.left > 0 {
		c := copy(p[n:], r.unit[r.off:])
		n += c
		r.off += c
		if r.off == len(r.unit) {
			r.off = 0
			r.left--
		}
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}
