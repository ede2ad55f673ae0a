package manifests

import "errors"

// Sentinels, checked with errors.Is.
var (
	// ErrInvalid marks a document, name or path that breaks the format rules.
	ErrInvalid = errors.New("invalid")
	// ErrTooLarge marks a document beyond its size bound.
	ErrTooLarge = errors.New("too large")
	// ErrBadSignature marks an index whose signature does not verify with any trusted key.
	ErrBadSignature = errors.New("bad signature")
)
