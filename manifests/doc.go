// Package manifests owns drepo's formats: blob hashes and paths, the manifest of one app
// version, the signed index of a repository, the name and path rules every other package
// relies on, and the two encodings of a file's bytes that a device decodes on its own:
// deltas from an earlier version's blob (delta.go) and packed chunks (packed.go). It imports no other drepo package, so every side (admin, server, device) shares
// one strict definition of what a valid document is.
package manifests
