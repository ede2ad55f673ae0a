package dav

import (
	"bytes"
	"encoding/base64"
	"encoding/xml"
	"io"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"testing"
)

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func FuzzParseReprDigest(f *testing.F) {
	for _, s := range []string{"sha-256=:LCa0a2j/xo/5m0U8HTBBNBNCLXBkg7+g+YpeiGJm564=:", "sha-512=:x:, sha-256=:AA==:", "sha-256=", ":", "sha-256=::"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		sum, ok := parseReprDigest(h)
		if !ok {
			return
		}
		// an accepted digest formats back to a header that parses to the same value
		back, ok := parseReprDigest("sha-256=:" + base64.StdEncoding.EncodeToString(sum[:]) + ":")
		if !ok || back != sum {
			t.Fatalf("%q: round trip failed", h)
		}
	})
}

// FuzzDecodeMultistatus checks the bounded decoder against plain encoding/xml: whatever both
// read, they read alike; whatever encoding/xml reads, so does the decoder, unless it holds a
// DOCTYPE or other declaration (refused) or passes one of the bounds; no entry it passes on
// lies outside the repository.
func FuzzDecodeMultistatus(f *testing.F) {
	f.Add([]byte(`<?xml version="1.0"?><D:multistatus xmlns:D="DAV:"><D:response><D:href>/repo/blobs/sha256/ab/x</D:href><D:propstat><D:prop><D:getcontentlength>12</D:getcontentlength><D:resourcetype/></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response></D:multistatus>`))
	f.Add([]byte(`<D:multistatus xmlns:D="DAV:"><D:response><D:href>/other/x</D:href></D:response>`))
	f.Add([]byte(`<D:multistatus xmlns:D="DAV:"><D:response><D:href>%zz</D:href></D:response></D:multistatus>`))
	f.Add([]byte(`<multistatus xmlns="DAV:"><!-- c --><response><href><![CDATA[/repo/a]]>&amp;b&#x41;</href><propstat><prop><resourcetype><collection/></resourcetype></prop><status>HTTP/1.1 200 OK</status></propstat></response></multistatus>`))
	base, _ := url.Parse("http://127.0.0.1/repo/")
	w := &WebDAV{HTTPReader: &HTTPReader{base: base}}
	f.Fuzz(func(t *testing.T, b []byte) {
		var got, want []FileInfo
		err := w.decodeMultistatus(bytes.NewReader(b), "", func(fi FileInfo) error {
			if fi.Name == "" || strings.HasPrefix(fi.Name, "/") {
				t.Fatalf("entry outside the repository: %+v", fi)
			}
			got = append(got, fi)
			return nil
		})
		refErr := referenceMultistatus(w, b, func(fi FileInfo) { want = append(want, fi) })
		switch {
		case err == nil && refErr == nil:
			if !slices.Equal(got, want) {
				t.Fatalf("decoder read %+v, encoding/xml %+v", got, want)
			}
		case err != nil && refErr == nil && !boundOrDeclaration(err):
			t.Fatalf("decoder refused what encoding/xml reads: %v", err)
		}
	})
}

// boundOrDeclaration reports whether err is one of the decoder's deliberate refusals.
func boundOrDeclaration(err error) bool {
	for _, s := range []string{"declarations", "too deep", "more than", "over 65536 bytes", "unexpected end"} {
		if strings.Contains(err.Error(), s) {
			return true
		}
	}
	return false
}

// referenceMultistatus reads a multistatus with plain encoding/xml and no bounds.
func referenceMultistatus(w *WebDAV, b []byte, fn func(FileInfo)) error {
	dec := xml.NewDecoder(bytes.NewReader(b))
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		se, ok := tok.(xml.StartElement)
		if !ok || se.Name.Space != "DAV:" || se.Name.Local != "response" {
			continue
		}
		var r davResponse
		if err := dec.DecodeElement(&r, &se); err != nil {
			return err
		}
		if fi, ok := w.responseInfo(&r, ""); ok {
			fn(fi)
		}
	}
}

// FuzzContentRangeStart: whatever Content-Range a server sends, its start is a
// non-negative number or -1 (refused); never a panic.
func FuzzContentRangeStart(f *testing.F) {
	for _, s := range []string{"bytes 0-9/10", "bytes 5-9/*", "bytes */10", "bytes -1-5/10", "bytes 99999999999999999999-1/2", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		if n := contentRangeStart(h); n < -1 {
			t.Fatalf("%q: start %d", h, n)
		}
	})
}
