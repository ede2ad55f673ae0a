package dav

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"

	"aead.dev/minisign"

	"github.com/drepo-dev/drepo/manifests"
)

// ReadOptions are what a reader needs: how often to retry and where to log. A device sets
// Retry.Attempts to 1: on any failure it moves to its next source instead.
type ReadOptions struct {
	Retry Retry
	Log   *slog.Logger
}

func (ro ReadOptions) WithDefaults() ReadOptions {
	if ro.Log == nil {
		ro.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return ro
}

// ReadDoc reads a small document from a repository (nil if it does not exist): at most
// SmallAttempts tries, each within SmallTimeout for documents up to an index's size.
func ReadDoc(ctx context.Context, r Reader, name string, max int, ro ReadOptions) ([]byte, error) {
	ro = ro.WithDefaults()
	var b []byte
	err := ro.Retry.small().Do(ctx, ro.Log, "read "+name, func() error {
		// A small document is read whole within SmallTimeout; a manifest may be larger and
		// keeps the stall guard only.
		rctx, cancel := ctx, context.CancelFunc(func() {})
		if max <= manifests.MaxIndexSize {
			rctx, cancel = context.WithTimeoutCause(ctx, SmallTimeout, ErrNoAnswer)
		}
		defer cancel()
		rc, err := r.Open(rctx, name, 0, -1)
		if err != nil {
			return err
		}
		defer rc.Close()
		b, err = manifests.ReadLimited(rc, max)
		if err != nil && context.Cause(rctx) == ErrNoAnswer {
			err = fmt.Errorf("mirror: GET %s: %w within %s", name, ErrNoAnswer, SmallTimeout)
		}
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	return b, err
}

// ReadIndexDoc reads a repository's index document and the signature of exactly those
// bytes (signatures/<sha256>.minisig, else index.json.minisig). ErrNotFound if there is no
// index; sig is nil if there is no signature. Nothing is verified here.
func ReadIndexDoc(ctx context.Context, r Reader, ro ReadOptions) (doc, sig []byte, err error) {
	doc, err = ReadDoc(ctx, r, IndexName, manifests.MaxIndexSize, ro)
	if err != nil {
		return nil, nil, err
	}
	if doc == nil {
		where := IndexName
		if u, ok := r.(interface{ URL(string) string }); ok {
			where = u.URL(IndexName)
		}
		return nil, nil, fmt.Errorf("mirror: no index at %s: %w", where, ErrNotFound)
	}
	sig, err = ReadSig(ctx, r, doc, ro)
	return doc, sig, err
}

// ReadIndex fetches a repository's index and signature and verifies them with keys.
func ReadIndex(ctx context.Context, r Reader, keys []minisign.PublicKey, ro ReadOptions) (*manifests.Index, error) {
	doc, sig, err := ReadIndexDoc(ctx, r, ro)
	if err != nil {
		return nil, err
	}
	return manifests.VerifyIndex(keys, doc, sig)
}

// ReadSig reads the signature of the index document doc: the one stored under the index's
// hash, else index.json.minisig (repositories written by hand with minisign). nil if neither.
func ReadSig(ctx context.Context, r Reader, doc []byte, ro ReadOptions) ([]byte, error) {
	sig, err := ReadDoc(ctx, r, SigPath(doc), manifests.MaxSignatureSize, ro)
	if err != nil || sig != nil {
		return sig, err
	}
	return ReadDoc(ctx, r, SigName, manifests.MaxSignatureSize, ro)
}

// ErrCorrupt: a source sent bytes that do not match the hash they were asked for by.
var ErrCorrupt = errors.New("bytes do not match their hash")

// ErrProtocol: a source answered what no honest server of the protocol would (a range
// other than the one asked for, a document larger than the index says): like wrong
// bytes, a reason not to ask it again.
var ErrProtocol = errors.New("the source broke the protocol")

// ReadManifestDoc reads the manifest blob h and refuses bytes that do not hash to h
// (ErrCorrupt): a reader that trusts the index trusts what it names by hash, nothing else.
// size, when above 0, is the manifest_size the index gives: the read stops there, and a
// longer document breaks the protocol (ErrProtocol) without more than size bytes read.
func ReadManifestDoc(ctx context.Context, r Reader, h manifests.Hash, size int64, ro ReadOptions) ([]byte, error) {
	max := manifests.MaxManifestSize
	if size > 0 && size < int64(max) {
		max = int(size)
	}
	b, err := ReadDoc(ctx, r, manifests.BlobPath(h), max, ro)
	if errors.Is(err, manifests.ErrTooLarge) && size > 0 {
		return nil, fmt.Errorf("mirror: manifest %s: longer than the %d bytes the index gives: %w", h, size, ErrProtocol)
	}
	if err != nil {
		return nil, err
	}
	if b == nil {
		return nil, fmt.Errorf("mirror: manifest %s: %w", h, ErrNotFound)
	}
	if manifests.SumBytes(b) != h {
		return nil, fmt.Errorf("mirror: manifest %s: %w", h, ErrCorrupt)
	}
	return b, nil
}

// ReadManifest is ReadManifestDoc, decoded strictly.
func ReadManifest(ctx context.Context, r Reader, h manifests.Hash, ro ReadOptions) (*manifests.Manifest, error) {
	b, err := ReadManifestDoc(ctx, r, h, 0, ro)
	if err != nil {
		return nil, err
	}
	return manifests.DecodeManifest(b)
}

// DeviceOrder returns the repositories a device reads, in the order it tries them:
// priority high to low, equal priorities in random order (to spread load), negative
// priorities (staging) dropped.
func DeviceOrder(repos []Repository) []Repository {
	var out []Repository
	for _, r := range repos {
		if !r.Staging() {
			out = append(out, r)
		}
	}
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	slices.SortStableFunc(out, func(a, b Repository) int { return b.Priority - a.Priority })
	return out
}
