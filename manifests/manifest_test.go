package manifests

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func sampleManifest() *Manifest {
	return &Manifest{App: "base_system", Version: "12.7.4", ChunkSize: DefaultChunkSize, Files: []File{
		{Path: "z/last", Size: 5, SHA256: SumBytes([]byte("z")), Chunks: []Hash{SumBytes([]byte("z"))}},
		{Path: "a", Size: 0, SHA256: SumBytes(nil)},
		{Path: "big", Size: DefaultChunkSize + 1, SHA256: SumBytes([]byte("b")), Executable: true,
			Chunks: []Hash{SumBytes([]byte("1")), SumBytes([]byte("2"))}},
	}}
}

func TestManifestRoundTripDeterministic(t *testing.T) {
	m := sampleManifest()
	b1, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	m2, err := DecodeManifest(b1)
	if err != nil {
		t.Fatal(err)
	}
	if m2.Files[0].Path != "a" || m2.Files[2].Path != "z/last" || !m2.Files[1].Executable {
		t.Fatalf("decoded files not sorted or lost fields: %+v", m2.Files)
	}
	b2, err := m2.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b1, b2) {
		t.Fatalf("encoding not deterministic:\n%s\n%s", b1, b2)
	}
	if m2.TotalSize() != DefaultChunkSize+6 {
		t.Fatalf("TotalSize = %d", m2.TotalSize())
	}
}

func TestManifestRejects(t *testing.T) {
	good, _ := sampleManifest().Encode()
	cases := map[string]string{
		"unknown schema": strings.Replace(string(good), ManifestSchema, "drepo.manifest/v9", 1),
		"unknown field":  strings.Replace(string(good), `"app":`, `"extra":1, "app":`, 1),
		"trailing data":  string(good) + "{}",
		"absolute path":  strings.Replace(string(good), `"path":"a"`, `"path":"/a"`, 1),
		"dotdot path":    strings.Replace(string(good), `"path":"a"`, `"path":"../a"`, 1),
		"backslash path": strings.Replace(string(good), `"path":"a"`, `"path":"a\\\\b"`, 1),
		"nul path":       strings.Replace(string(good), `"path":"a"`, `"path":"a\u0000"`, 1),
		"duplicate path": strings.Replace(string(good), `"path":"big"`, `"path":"a"`, 1),
		"chunk mismatch": strings.Replace(string(good), `"size":5`, `"size":4194305`, 1),
		"bad app":        strings.Replace(string(good), `"base_system"`, `"base system"`, 1),
		"bad version":    strings.Replace(string(good), `"12.7.4"`, `"../x"`, 1),
		"tiny chunks":    strings.Replace(string(good), fmt.Sprintf(`"chunk_size":%d`, DefaultChunkSize), `"chunk_size":1`, 1),
		"uppercase hash": strings.Replace(string(good), SumBytes(nil).String(), strings.ToUpper(SumBytes(nil).String()), 1),
		"file and dir":   strings.Replace(string(good), `"path":"a"`, `"path":"z"`, 1),
	}
	for name, doc := range cases {
		if doc == string(good) {
			t.Fatalf("%s: replacement did not apply", name)
		}
		if _, err := DecodeManifest([]byte(doc)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
	// a delta must name a hash per chunk of its blob, no more, no fewer
	withDelta := sampleManifest()
	withDelta.Files[2].Deltas = []Delta{{From: SumBytes([]byte("old")), FromSize: 9, Blob: SumBytes([]byte("d")), Size: DefaultChunkSize + 1,
		Chunks: []Hash{SumBytes([]byte("d1")), SumBytes([]byte("d2"))}}}
	v2, err := withDelta.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeManifest(v2); err != nil {
		t.Fatalf("a good delta: %v", err)
	}
	for name, doc := range map[string]string{
		"a delta chunk short": strings.Replace(string(v2), `,"`+SumBytes([]byte("d2")).String()+`"`, "", 1),
		"a delta chunk more":  strings.Replace(string(v2), `"`+SumBytes([]byte("d2")).String()+`"`, `"`+SumBytes([]byte("d2")).String()+`","`+SumBytes([]byte("d3")).String()+`"`, 1),
		"no delta chunks":     strings.Replace(strings.Replace(string(v2), `"`+SumBytes([]byte("d1")).String()+`",`, "", 1), `"`+SumBytes([]byte("d2")).String()+`"`, "", 1),
	} {
		if doc == string(v2) {
			t.Fatalf("%s: replacement did not apply", name)
		}
		if _, err := DecodeManifest([]byte(doc)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
	if _, err := DecodeManifest(make([]byte, MaxManifestSize+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized: err = %v, want ErrTooLarge", err)
	}
}

func sampleIndex() *Index {
	exp := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	return &Index{Serial: 7, Created: time.Date(2026, 11, 22, 10, 0, 0, 123, time.FixedZone("x", 3600)), Expires: &exp,
		Apps: []AppEntry{
			{App: "zoom", Version: "1.0", Manifest: SumBytes([]byte("m2")), ManifestSize: 10, TotalSize: 20},
			{App: "base_system", Version: "12.7.4", Manifest: SumBytes([]byte("m1")), ManifestSize: 10, TotalSize: 20},
		}}
}

func TestIndexRoundTripDeterministic(t *testing.T) {
	b1, err := sampleIndex().Encode()
	if err != nil {
		t.Fatal(err)
	}
	x, err := DecodeIndex(b1)
	if err != nil {
		t.Fatal(err)
	}
	if x.Apps[0].App != "base_system" || x.Created.Location() != time.UTC || x.Created.Nanosecond() != 0 {
		t.Fatalf("not canonical: %+v", x)
	}
	if e, ok := x.Find("zoom", "1.0"); !ok || e.TotalSize != 20 {
		t.Fatalf("Find = %+v %v", e, ok)
	}
	if _, ok := x.Find("zoom", "2.0"); ok {
		t.Fatal("Find found a missing version")
	}
	b2, _ := x.Encode()
	if !bytes.Equal(b1, b2) {
		t.Fatalf("encoding not deterministic")
	}
	if !x.Expired(time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)) || x.Expired(time.Date(2029, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatal("Expired wrong")
	}
}

func TestIndexRejects(t *testing.T) {
	good, _ := sampleIndex().Encode()
	cases := map[string]string{
		"serial zero":   strings.Replace(string(good), `"serial":7`, `"serial":0`, 1),
		"serial string": strings.Replace(string(good), `"serial":7`, `"serial":"7"`, 1),
		"unknown field": strings.Replace(string(good), `"serial":7`, `"serial":7, "x":1`, 1),
		"unsorted":      strings.Replace(string(good), `"base_system"`, `"zzz"`, 1),
		"bad schema":    strings.Replace(string(good), IndexSchema, "other", 1),
		"neg size":      strings.Replace(string(good), `"total_size":20`, `"total_size":-1`, 1),
		"expires early": strings.Replace(string(good), `2030-01-01`, `2020-01-01`, 1),
	}
	for name, doc := range cases {
		if doc == string(good) {
			t.Fatalf("%s: replacement did not apply", name)
		}
		if _, err := DecodeIndex([]byte(doc)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
}
