// Package mirror is the admin side: sync (source folder → signed index and blobs on every
// repository) and verify (every blob a repository's index names is there, with the right
// size and bytes), over the repository client of package mirror/dav.
package mirror
