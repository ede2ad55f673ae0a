package manifests

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Bounds on names and paths. They keep every document and every path on disk small enough
// for any filesystem and any WebDAV server.
const (
	MaxNameLen     = 128
	MaxPathLen     = 1024
	MaxPathElemLen = 255
)

// ValidateName checks an app name or version: 1 to 128 of [A-Za-z0-9._+-], and not "." or
// "..", so that "<app>/<version>" is always one safe folder pair in a source tree.
func ValidateName(kind, s string) error {
	if len(s) == 0 || len(s) > MaxNameLen {
		return fmt.Errorf("manifests: %s %.140q: must be 1 to %d characters: %w", kind, s, MaxNameLen, ErrInvalid)
	}
	if s == "." || s == ".." {
		return fmt.Errorf("manifests: %s %q: not allowed: %w", kind, s, ErrInvalid)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '_' || c == '+' || c == '-'
		if !ok {
			return fmt.Errorf("manifests: %s %.140q: only A-Z a-z 0-9 . _ + - allowed: %w", kind, s, ErrInvalid)
		}
	}
	return nil
}

// ValidatePath checks a file path inside an app version: relative, slash-separated, clean
// (no "", "." or ".." element, no trailing slash), no backslash, NUL or control character,
// valid UTF-8, bounded length. A path that passes can be joined to any root without escaping it.
func ValidatePath(p string) error {
	bad := func(why string) error {
		return fmt.Errorf("manifests: path %.200q: %s: %w", p, why, ErrInvalid)
	}
	switch {
	case p == "":
		return bad("empty")
	case len(p) > MaxPathLen:
		return bad(fmt.Sprintf("longer than %d bytes", MaxPathLen))
	case !utf8.ValidString(p):
		return bad("not UTF-8")
	case p[0] == '/':
		return bad("absolute")
	case strings.ContainsRune(p, '\\'):
		return bad("contains a backslash")
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f {
			return bad("contains a control character")
		}
	}
	for _, e := range strings.Split(p, "/") {
		switch {
		case e == "":
			return bad("empty element (unclean)")
		case e == "." || e == "..":
			return bad("contains . or .. (unclean)")
		case len(e) > MaxPathElemLen:
			return bad(fmt.Sprintf("element longer than %d bytes", MaxPathElemLen))
		}
	}
	return nil
}
