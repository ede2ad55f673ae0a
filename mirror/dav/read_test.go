package dav

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/drepo-dev/drepo/manifests"
)

func TestDeviceOrder(t *testing.T) {
	repos := []Repository{{Name: "stage", Priority: -1}, {Name: "low", Priority: 1}, {Name: "a", Priority: 10}, {Name: "b", Priority: 10}, {Name: "zero"}}
	seen := map[string]bool{}
	for i := 0; i < 200; i++ {
		got := DeviceOrder(repos)
		var names []string
		for _, r := range got {
			names = append(names, r.Name)
		}
		if len(names) != 4 || names[2] != "low" || names[3] != "zero" || slices.Contains(names, "stage") {
			t.Fatalf("order %v", names)
		}
		seen[names[0]] = true
	}
	if !seen["a"] || !seen["b"] {
		t.Fatalf("equal priorities are not shuffled: first was only %v", seen)
	}
}

// A manifest is accepted only if its bytes hash to the name it was asked for by.
func TestReadManifestChecksHash(t *testing.T) {
	m := &manifests.Manifest{App: "a", Version: "1", ChunkSize: manifests.DefaultChunkSize, Files: []manifests.File{}}
	doc, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	h := manifests.SumBytes(doc)
	tampered := append([]byte(nil), doc...)
	tampered[len(tampered)-3] = ' '
	for name, body := range map[string][]byte{"good": doc, "tampered": tampered} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
		w, _ := Open(Repository{Name: name, URL: srv.URL + "/"}, 1)
		got, err := ReadManifest(context.Background(), w, h, ReadOptions{Retry: Retry{Attempts: 1}})
		switch name {
		case "good":
			if err != nil || got.App != "a" {
				t.Fatalf("good manifest: %v", err)
			}
		case "tampered":
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("tampered manifest: %v, want ErrCorrupt", err)
			}
		}
		srv.Close()
	}
}
