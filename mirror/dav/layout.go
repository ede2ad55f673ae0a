package dav

import (
	"crypto/rand"
	"encoding/hex"

	"github.com/drepo-dev/drepo/manifests"
)

// Names in a repository (DESIGN.md "Repository layout"). Blob paths come from
// manifests.BlobPath, the one place they are built.
const (
	IndexName = "index.json"
	SigName   = "index.json.minisig"
	LeaseName = "lease.json"
	TmpDir    = "tmp"
	BlobsDir  = "blobs/sha256"
	SigsDir   = "signatures"
)

// SigPath is where the signature of one exact index document is kept: named by the index's
// SHA-256, written before the index is replaced, so a reader always finds the signature of
// the bytes it read (index.json.minisig, moved in after the index for minisign -Vm, lags
// behind for a moment during each commit).
func SigPath(index []byte) string {
	return SigsDir + "/" + manifests.SumBytes(index).String() + ".minisig"
}

// TmpName returns a fresh name in the repository's tmp/ folder.
func TmpName(base string) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return TmpDir + "/" + base + "." + hex.EncodeToString(b[:])
}
