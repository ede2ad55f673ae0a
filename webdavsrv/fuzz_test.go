package webdavsrv

import (
	"path"
	"strings"
	"testing"
)

func FuzzCheckXML(f *testing.F) {
	for _, s := range []string{
		`<?xml version="1.0"?><propfind xmlns="DAV:"><allprop/></propfind>`,
		`<D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><Z:a xmlns:Z="http://ns/">v</Z:a></D:prop></D:set></D:propertyupdate>`,
		`<propfind xmlns="DAV:"><prop><bar:foo xmlns:bar=""/></prop></propfind>`,
		`<a><b></a></b>`, `<a/><b/>`, "", `<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > maxXMLBody {
			return
		}
		_ = checkXML(b) // must not panic or hang; bounded by size, depth and token count
	})
}

func FuzzWantsSHA256(f *testing.F) {
	for _, s := range []string{"sha-256=1", "sha-512=3, sha-256=10", "sha-256=0", "sha-256", "sha-256=11", " , ,="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		if wantsSHA256(h) && !strings.Contains(h, "sha-256") {
			t.Fatalf("%q does not name sha-256", h)
		}
	})
}

func FuzzRel(f *testing.F) {
	for _, s := range []string{"/a/b", "/../x", "/.drepo-tmp-1", "a/../../b", "/", "//x//y/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		p, err := rel(name)
		if err != nil {
			return
		}
		if p != "." && (path.IsAbs(p) || p != path.Clean(p) || p == ".." || strings.HasPrefix(p, "../")) {
			t.Fatalf("rel(%q) = %q leaves the root", name, p)
		}
		for _, e := range strings.Split(p, "/") {
			if strings.HasPrefix(e, internalPrefix) {
				t.Fatalf("rel(%q) = %q reaches an internal file", name, p)
			}
		}
	})
}
