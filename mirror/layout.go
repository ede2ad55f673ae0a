package mirror

import (
	"crypto/rand"
	"encoding/hex"
)

// Names in a repository (DESIGN.md "Repository layout"). Blob paths come from
// manifests.BlobPath, the one place they are built.
const (
	IndexName = "index.json"
	SigName   = "index.json.minisig"
	LeaseName = "lease.json"
	TmpDir    = "tmp"
	BlobsDir  = "blobs/sha256"
)

// tmpName returns a fresh name in the repository's tmp/ folder.
func tmpName(base string) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return TmpDir + "/" + base + "." + hex.EncodeToString(b[:])
}
