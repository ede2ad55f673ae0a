// Package manifests owns drepo's formats: blob hashes and paths, the manifest of one app
// version, the signed index of a repository, and the name and path rules every other package
// relies on. It imports no other drepo package, so every side (admin, server, device) shares
// one strict definition of what a valid document is.
package manifests
