// Package peer is the device side of drepo: a store of verified blobs, fetch (an app version
// from the repositories in priority order and the LAN's peers, every byte checked against
// the signed index), the peer server that shares the store (serving a blob while it still
// arrives, from its verified chunks), and UDP discovery of who holds what.
//
// A download streams through a pipeline (pipeline.go): the network reader fills a fixed set
// of buffers, and the chunk hasher, the writer (O_DIRECT where it can: past the page cache)
// and the whole-file hasher take each one side by side, so a fetch costs about its slowest
// part. With peers placed before a repository, a fetch waits for a busy LAN peer that
// holds the blob rather than read it over the WAN again (PeerGroup.Patience): a LAN that
// starts together fills as a chain, one chunk behind per hop, and the WAN carries it once.
//
// Trust runs one way: an index is accepted only with a signature from a trusted key, a
// serial not below the highest this device accepted from that key (an equal serial only
// byte for byte), and an expiry later than both the clock and the newest creation time
// accepted; it is stored before anything is fetched under it. A manifest is used only if it
// hashes to the name the index gives; a chunk is written as verified only if it hashes to
// the manifest's chunk hash; a blob moves under its final name only if the whole file hashes
// to its name. So a repository (or later a peer) can withhold data but not alter it.
//
// The store (DESIGN: device store):
//
//	<store>/blobs/sha256/<h>        complete blobs, verified, named by SHA-256
//	<store>/partial/<h>             a blob being fetched (sparse; only verified chunks count)
//	<store>/partial/<h>.state       its size, chunk size and bitmap of verified chunks
//	<store>/manifests/<h>           manifests fetched (for store ls, gc and chunk reuse)
//	<store>/index.json(.minisig)    the last accepted index and its signature
//	<store>/trust.json              per signing key: highest serial accepted, its index hash
//	<store>/lock                    held (flock) by the fetch that writes the store
package peer
