package peer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"aead.dev/minisign"

	"github.com/drepo-dev/drepo/manifests"
)

// Reasons an index is refused (errors.Is). Each says which rule it broke, since an admin
// reading a device's log must tell an attack from a clock or key problem.
var (
	ErrRollback = errors.New("index older than one this device accepted (rollback)")
	ErrFork     = errors.New("a different index at a serial this device accepted (fork)")
	ErrExpired  = errors.New("index expired")
	ErrUnsigned = errors.New("index not signed by a trusted key")
)

// TrustState is what the device remembers about indexes it accepted: per signing key the
// highest serial and the SHA-256 of that index, and the newest creation time of any
// accepted index (a floor for expiry, so a device whose clock is wrong cannot be frozen on
// an old index).
type TrustState struct {
	Schema        string              `json:"schema"`
	Keys          map[string]KeyState `json:"keys"`
	NewestCreated time.Time           `json:"newest_created"`
}

// KeyState is the highest index accepted from one key.
type KeyState struct {
	Serial uint64         `json:"serial"`
	Index  manifests.Hash `json:"index_sha256"`
}

const trustSchema = "drepo.device-trust/v1"

// maxTrustState bounds trust.json (a few keys; far below this).
const maxTrustState = 1 << 20

// unsignedKey stands for "no key" when allow_unsigned is set.
const unsignedKey = "unsigned"

// DecodeTrustState reads trust.json strictly; a missing file is an empty state.
func DecodeTrustState(b []byte) (TrustState, error) {
	st := TrustState{Schema: trustSchema, Keys: map[string]KeyState{}}
	if b == nil {
		return st, nil
	}
	if len(b) > maxTrustState {
		return st, fmt.Errorf("peer: trust state over %d bytes: %w", maxTrustState, manifests.ErrInvalid)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var x TrustState
	if err := dec.Decode(&x); err != nil {
		return st, fmt.Errorf("peer: trust state: %v: %w", err, manifests.ErrInvalid)
	}
	if dec.More() || x.Schema != trustSchema {
		return st, fmt.Errorf("peer: trust state: trailing data or schema %q: %w", x.Schema, manifests.ErrInvalid)
	}
	if x.Keys == nil {
		x.Keys = map[string]KeyState{}
	}
	return x, nil
}

// Encode writes the state as JSON.
func (st TrustState) Encode() []byte {
	st.Schema = trustSchema
	b, _ := json.MarshalIndent(st, "", "  ")
	return append(b, '\n')
}

// Accept checks an index document and its signature against the trust rules and returns the
// index and the state to store once it is kept. keys are the trusted keys; with none,
// allowUnsigned must be set and the index is taken without a signature (its serial rules
// still hold). now is the device's clock.
func (st TrustState) Accept(keys []minisign.PublicKey, allowUnsigned bool, doc, sig []byte, now time.Time) (*manifests.Index, TrustState, error) {
	var keyID string
	switch {
	case len(keys) > 0:
		if sig == nil {
			return nil, st, fmt.Errorf("peer: %w: the source has no signature for its index", ErrUnsigned)
		}
		k, err := manifests.VerifyKey(keys, doc, sig)
		if err != nil {
			return nil, st, fmt.Errorf("peer: %w: %w", ErrUnsigned, err)
		}
		keyID = fmt.Sprintf("%016X", k.ID())
	case allowUnsigned:
		keyID = unsignedKey
	default:
		return nil, st, fmt.Errorf("peer: %w: no trusted_keys configured (set allow_unsigned: true to fetch without)", ErrUnsigned)
	}
	x, err := manifests.DecodeIndex(doc)
	if err != nil {
		return nil, st, err
	}
	h := manifests.SumBytes(doc)
	prev, seen := st.Keys[keyID]
	switch {
	case seen && x.Serial < prev.Serial:
		return nil, st, fmt.Errorf("peer: %w: serial %d, this device accepted %d", ErrRollback, x.Serial, prev.Serial)
	case seen && x.Serial == prev.Serial && h != prev.Index:
		return nil, st, fmt.Errorf("peer: %w: serial %d with other content than the one accepted", ErrFork, x.Serial)
	}
	floor := now
	if st.NewestCreated.After(floor) {
		floor = st.NewestCreated
	}
	if x.Expires != nil && !x.Expires.After(floor) {
		return nil, st, fmt.Errorf("peer: %w: expired %s (judged at %s, the later of the clock and the newest index accepted)",
			ErrExpired, x.Expires.UTC().Format(time.RFC3339), floor.UTC().Format(time.RFC3339))
	}
	next := TrustState{Schema: trustSchema, Keys: map[string]KeyState{}, NewestCreated: st.NewestCreated}
	for k, v := range st.Keys {
		next.Keys[k] = v
	}
	next.Keys[keyID] = KeyState{Serial: x.Serial, Index: h}
	if x.Created.After(next.NewestCreated) {
		next.NewestCreated = x.Created.UTC()
	}
	return x, next, nil
}
