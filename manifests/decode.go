package manifests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
)

// decodeStrict decodes one JSON document from b into v: unknown fields, trailing data and
// documents over max bytes are errors, so a document means exactly one thing everywhere.
func decodeStrict(what string, b []byte, max int, v any) error {
	if len(b) > max {
		return fmt.Errorf("manifests: %s: %d bytes, limit %d: %w", what, len(b), max, ErrTooLarge)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("manifests: %s: %v: %w", what, err, ErrInvalid)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("manifests: %s: trailing data after the document: %w", what, ErrInvalid)
	}
	return nil
}

// ReadLimited reads all of r, refusing more than max bytes; used for documents fetched from
// a network, which must be bounded before they are parsed.
func ReadLimited(r io.Reader, max int) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, int64(max)+1))
	if err != nil {
		return nil, err
	}
	if len(b) > max {
		return nil, fmt.Errorf("manifests: document over %d bytes: %w", max, ErrTooLarge)
	}
	return b, nil
}

// encode is the deterministic encoder: compact, struct field order, no HTML escaping, one
// trailing newline. Maps are never used in documents, so equal values give byte-identical
// output. (Compact: a manifest of many files is smaller and faster to write and read;
// drepo manifest show prints documents for people.)
func encode(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic("manifests: encode: " + err.Error()) // only plain structs are encoded
	}
	return buf.Bytes()
}
