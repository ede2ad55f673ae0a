// Package peer is the device side of drepo: a store of verified blobs, fetch (an app version
// from the repositories in priority order and the LAN's peers, every byte checked against
// the signed index), the peer server that shares the store (serving a blob while it still
// arrives, from its verified chunks), and UDP discovery of who holds what.
//
// A download streams through a pipeline (pipeline.go): the network reader fills a fixed set
// of buffers, and the chunk hasher and the writer (O_DIRECT where it can: past the page
// cache) take each one side by side, so a fetch costs about its slowest part. Which source,
// when to leave a slow one, how long to wait for the LAN and when a peer server gives a
// slow transfer's slot to another device are decided by Policy (policy.go): pure code with
// the clock passed in, which the simulator (drepo-bench lan-sim) runs too. The fetch keeps
// what it measured of the LAN in lanMemory and one blob's round state in blobWant, both
// passed down, not read from fields elsewhere; a helper (help.go) may take the tail of a
// blob from a second, complete peer while the first streams. The peer server reads a blob
// still arriving through blobView, the one reader of the partial-blob protocol.
//
// Trust runs one way: an index is accepted only with a signature from a trusted key, a
// serial not below the highest this device accepted from that key (an equal serial only
// byte for byte), and an expiry later than both the clock and the newest creation time
// accepted; it is stored before anything is fetched under it. A manifest is used only if it
// hashes to the name the index gives; a chunk is written as verified only if it hashes to
// the manifest's chunk hash; a blob moves under its final name when every chunk is verified
// (the signed manifest names both the file and its chunks). So a repository or a peer can
// withhold data but not alter it.
//
// A LAN may lie. A peer is one address (one answer, one source, one ban, whatever the
// instance ids or ports it uses); all peers share one bounded connection pool; what peers
// that never delivered a verified byte cost a fetch is counted and bounded by
// Policy.Budget, and a transfer below Policy.Floor is cut (guard); an answer is followed
// only to its own address on the LAN's http_port (PeerGroup.follow), or, with the fleet's
// CA, only over HTTPS to a certificate the CA issued (fleet.go). The peer server answers
// from a cached view of the store after its rate limits (heldcache.go) and gives every
// write of a transfer a deadline. The store opens nothing through a symlink and reads
// nothing without a bound (storefs.go), and uses a complete blob only while it is the
// file that was verified.
//
// The store:
//
//	<store>/blobs/sha256/<h>        complete blobs, verified, named by SHA-256
//	<store>/verified/<h>            blob h's size, mtime and inode when it was verified
//	<store>/partial/<h>             a blob being fetched (sparse; only verified chunks count;
//	                                its fetch holds a shared flock on it)
//	<store>/partial/<h>.state       its size, chunk size and bitmap of verified chunks
//	<store>/manifests/<h>           manifests fetched (for store ls, gc and chunk reuse)
//	<store>/index.json(.minisig)    the last accepted index and its signature
//	<store>/trust.json              per signing key: highest serial accepted, its index hash
//	<store>/lock                    held (flock) by the fetch that writes the store
package peer
