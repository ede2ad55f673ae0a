// Package dav is drepo's client of a repository server: a Repository (URL, priority,
// credentials, TLS), the read side a device and verify need (Reader: open a range, stat;
// ReadIndex, ReadManifest, each checked against its hash), and the WebDAV Remote sync
// writes through (put with a known length, move, list, remove). Cross-cutting policy lives
// here once: the retry policy (Retry), response bounds, the stall guard, the deadline for
// small requests, the same-origin rule for redirects and the name checks on listings.
// Package mirror (sync, verify) and package peer (the device) both build on it; peer
// never imports mirror.
package dav
