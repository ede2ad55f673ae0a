package peer

import (
	"encoding/binary"
	"errors"

	"github.com/drepo-dev/drepo/manifests"
)

// Discovery datagrams (UDP, peers.discovery_port, default 22336). Every datagram starts with
// the magic "DRPD" and a version byte; anything else, or anything malformed or oversized, is
// dropped without an answer. A request is always RequestSize bytes (zero padding included)
// and an answer is never larger, so a forged request cannot make a peer send more than it
// received (no amplification). All integers are big-endian.
//
//	request: magic(4) version(1) type=1(1) instance(8) kind(1) key(32) padding(17)
//	answer:  magic(4) version(1) type=2(1) instance(8) kind(1) key(32)
//	         http_port(2) https_port(2) flags(1) held_bytes(8) free_slots(1)
//
// kind 1 asks "who has blob key?" (the SHA-256); kind 2 asks "who has an index with serial
// ≥ S?" (S in the key's first 8 bytes; the answer's key holds the serial it has). flags bit 0:
// the blob is complete (else partial, held_bytes verified).
const (
	discoMagic   = "DRPD"
	discoVersion = 1
	RequestSize  = 64
	answerSize   = 61
	maxDatagram  = 512
	typeRequest  = 1
	typeAnswer   = 2
	KindBlob     = 1
	KindIndex    = 2
	flagComplete = 1
	headerSize   = 4 + 1 + 1 + 8 + 1 + 32
)

// ErrDatagram: a datagram that is not a valid discovery message (it is dropped).
var ErrDatagram = errors.New("peer: not a valid discovery datagram")

// Query is what a request asks.
type Query struct {
	Instance uint64 // the asker's instance id (a device ignores its own requests)
	Kind     byte   // KindBlob or KindIndex
	Blob     manifests.Hash
	Serial   uint64 // KindIndex: at least this serial
}

// Answer is what a peer that has it replies.
type Answer struct {
	Instance  uint64
	Kind      byte
	Blob      manifests.Hash
	Serial    uint64 // KindIndex: the serial it holds
	HTTPPort  uint16
	HTTPSPort uint16 // 0: no HTTPS
	Complete  bool
	Held      int64 // verified bytes of the blob it holds
	FreeSlots uint8 // transfers it would accept now
}

func putHeader(b []byte, typ byte, instance uint64, kind byte, blob manifests.Hash, serial uint64) {
	copy(b, discoMagic)
	b[4] = discoVersion
	b[5] = typ
	binary.BigEndian.PutUint64(b[6:14], instance)
	b[14] = kind
	if kind == KindIndex {
		binary.BigEndian.PutUint64(b[15:23], serial)
	} else {
		copy(b[15:47], blob[:])
	}
}

func readHeader(b []byte, typ byte) (instance uint64, kind byte, blob manifests.Hash, serial uint64, err error) {
	if len(b) < headerSize || len(b) > maxDatagram || string(b[:4]) != discoMagic || b[4] != discoVersion || b[5] != typ {
		return 0, 0, blob, 0, ErrDatagram
	}
	instance, kind = binary.BigEndian.Uint64(b[6:14]), b[14]
	switch kind {
	case KindBlob:
		copy(blob[:], b[15:47])
	case KindIndex:
		serial = binary.BigEndian.Uint64(b[15:23])
		for _, c := range b[23:47] {
			if c != 0 {
				return 0, 0, blob, 0, ErrDatagram
			}
		}
	default:
		return 0, 0, blob, 0, ErrDatagram
	}
	return instance, kind, blob, serial, nil
}

// EncodeQuery builds a request datagram (always RequestSize bytes).
func EncodeQuery(q Query) []byte {
	b := make([]byte, RequestSize)
	putHeader(b, typeRequest, q.Instance, q.Kind, q.Blob, q.Serial)
	return b
}

// DecodeQuery reads a request: exactly RequestSize bytes, padding zero.
func DecodeQuery(b []byte) (Query, error) {
	if len(b) != RequestSize {
		return Query{}, ErrDatagram
	}
	inst, kind, blob, serial, err := readHeader(b, typeRequest)
	if err != nil {
		return Query{}, err
	}
	for _, c := range b[headerSize:] {
		if c != 0 {
			return Query{}, ErrDatagram
		}
	}
	return Query{Instance: inst, Kind: kind, Blob: blob, Serial: serial}, nil
}

// EncodeAnswer builds an answer datagram (answerSize bytes, below RequestSize).
func EncodeAnswer(a Answer) []byte {
	b := make([]byte, answerSize)
	putHeader(b, typeAnswer, a.Instance, a.Kind, a.Blob, a.Serial)
	binary.BigEndian.PutUint16(b[47:49], a.HTTPPort)
	binary.BigEndian.PutUint16(b[49:51], a.HTTPSPort)
	if a.Complete {
		b[51] = flagComplete
	}
	binary.BigEndian.PutUint64(b[52:60], uint64(max(a.Held, 0)))
	b[60] = a.FreeSlots
	return b
}

// DecodeAnswer reads an answer: exactly answerSize bytes, ports and sizes in bounds.
func DecodeAnswer(b []byte) (Answer, error) {
	if len(b) != answerSize {
		return Answer{}, ErrDatagram
	}
	inst, kind, blob, serial, err := readHeader(b, typeAnswer)
	if err != nil {
		return Answer{}, err
	}
	a := Answer{Instance: inst, Kind: kind, Blob: blob, Serial: serial,
		HTTPPort: binary.BigEndian.Uint16(b[47:49]), HTTPSPort: binary.BigEndian.Uint16(b[49:51])}
	if b[51]&^flagComplete != 0 || a.HTTPPort == 0 {
		return Answer{}, ErrDatagram
	}
	a.Complete = b[51] == flagComplete
	held := binary.BigEndian.Uint64(b[52:60])
	if held > manifests.MaxFileSize {
		return Answer{}, ErrDatagram
	}
	a.Held = int64(held)
	a.FreeSlots = b[60]
	return a, nil
}
