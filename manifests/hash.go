package manifests

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// Hash is a SHA-256 digest; a blob is named by the Hash of its bytes, the same value
// `sha256sum` prints, so admins can check a blob with standard tools.
type Hash [sha256.Size]byte

// ParseHash parses 64 lowercase hex digits. Uppercase is refused so that one blob has
// exactly one name (and one path on every server).
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != 2*sha256.Size {
		return h, fmt.Errorf("manifests: hash %.80q: want %d hex digits, got %d: %w", s, 2*sha256.Size, len(s), ErrInvalid)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return h, fmt.Errorf("manifests: hash %.80q: not lowercase hex: %w", s, ErrInvalid)
		}
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, fmt.Errorf("manifests: hash %.80q: %w", s, ErrInvalid)
	}
	return h, nil
}

// String returns the lowercase hex form.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// IsZero reports whether h is the zero value (never a valid reference).
func (h Hash) IsZero() bool { return h == Hash{} }

// MarshalText encodes h as lowercase hex.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText decodes lowercase hex strictly.
func (h *Hash) UnmarshalText(b []byte) error {
	v, err := ParseHash(string(b))
	if err != nil {
		return err
	}
	*h = v
	return nil
}

// SumBytes returns the Hash of b; for small documents (manifests, indexes) only.
func SumBytes(b []byte) Hash { return sha256.Sum256(b) }

// BlobPath is the one place a blob's location is built: "blobs/sha256/<h[0:2]>/<h>",
// relative to a repository root or a store. Every side uses it, so layouts never drift.
func BlobPath(h Hash) string {
	s := h.String()
	return "blobs/sha256/" + s[:2] + "/" + s
}
