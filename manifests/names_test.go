package manifests

import (
	"errors"
	"strings"
	"testing"
)

func TestValidatePath(t *testing.T) {
	good := []string{"a", "bin/app", "a.b/c-d_e+f", "über/файл", strings.Repeat("x", 255)}
	for _, p := range good {
		if err := ValidatePath(p); err != nil {
			t.Errorf("ValidatePath(%q) = %v, want nil", p, err)
		}
	}
	bad := []string{"", "/etc/passwd", "a/../b", "..", ".", "./a", "a/./b", "a//b", "a/", "a\\b",
		"a\x00b", "a\nb", "\xff", strings.Repeat("x", 256), strings.Repeat("a/", 600) + "b"}
	for _, p := range bad {
		err := ValidatePath(p)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidatePath(%q) = %v, want ErrInvalid", p, err)
		}
	}
}

func TestValidateName(t *testing.T) {
	for _, s := range []string{"base_system", "12.7.4", "a+b-c", "A", strings.Repeat("v", 128)} {
		if err := ValidateName("app", s); err != nil {
			t.Errorf("ValidateName(%q) = %v", s, err)
		}
	}
	for _, s := range []string{"", ".", "..", "a b", "a/b", "a@b", "ä", strings.Repeat("v", 129)} {
		if err := ValidateName("app", s); !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidateName(%q) = %v, want ErrInvalid", s, err)
		}
	}
}

func TestHashParse(t *testing.T) {
	h := SumBytes([]byte("hello"))
	s := h.String()
	if s != "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824" {
		t.Fatalf("String = %s", s)
	}
	back, err := ParseHash(s)
	if err != nil || back != h {
		t.Fatalf("ParseHash round trip: %v %v", back, err)
	}
	if got := BlobPath(h); got != "blobs/sha256/2c/"+s {
		t.Fatalf("BlobPath = %s", got)
	}
	for _, bad := range []string{"", s[:63], strings.ToUpper(s), s + "0", "g" + s[1:]} {
		if _, err := ParseHash(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseHash(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"plain text, ünïcode": "plain text, ünïcode",
		"\x1b[2J\x1b[HFAKE":   `\x1b[2J\x1b[HFAKE`,
		"a\nb\rc\td":          `a\x0ab\x0dc\x09d`,
		"bad \xff byte":       `bad \xff byte`,
		"rtl \u202e gnp.exe":  `rtl \u202e gnp.exe`,
		"\u0085next line":     `\x85next line`,
	} {
		if got := Printable(in); got != want {
			t.Errorf("Printable(%q) = %q, want %q", in, got, want)
		}
	}
}
