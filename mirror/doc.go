// Package mirror is the admin side: repositories (URL, priority, credentials, TLS), the
// WebDAV client, sync (source folder → signed index and blobs on every repository) and
// verify (every blob a repository's index names is there, with the right size and bytes).
package mirror
