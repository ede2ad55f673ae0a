// Package webdavsrv is drepo's embedded WebDAV repository server (`drepo serve`), built on
// golang.org/x/net/webdav and hardened where that package is not: uploads are atomic (temp
// file, fsync, rename only when the whole body arrived), MOVE and COPY replace a file without
// a window where it is missing, every path is confined to the root by os.Root (symlinks cannot
// lead out), internal files are never served, request XML is bounded and validated, dead
// properties persist (in extended attributes), and GET/HEAD answer Want-Repr-Digest (RFC 9530)
// from a digest cached beside the file.
package webdavsrv
