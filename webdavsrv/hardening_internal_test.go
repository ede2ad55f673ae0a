package webdavsrv

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/net/webdav"
)

// An unknown user pays the bcrypt cost the file's users pay, so a wrong name answers as
// slowly as a wrong password.
func TestDummyHashCostMatchesUsers(t *testing.T) {
	for _, cost := range []int{5, 12} {
		hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), cost)
		p := filepath.Join(t.TempDir(), "htpasswd")
		os.WriteFile(p, []byte("admin:"+string(hash)+"\n"), 0o600)
		h, err := loadHtpasswd(p, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := bcrypt.Cost(dummyHash(h.cost)); got != cost {
			t.Errorf("users of cost %d: unknown users pay cost %d", cost, got)
		}
	}
}

// A request that gives up does not fail the others waiting for the same digest.
func TestDigestSurvivesTheFirstCallerLeaving(t *testing.T) {
	p := filepath.Join(t.TempDir(), "big")
	data := make([]byte, 64<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	os.WriteFile(p, data, 0o644)
	want := sha256.Sum256(data)
	d := &digester{}
	open := func() *os.File {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	f1 := open()
	ctx1, cancel1 := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		_, err := d.digest(ctx1, f1, "big")
		f1.Close() // the first request's handler closes its file as it leaves
		first <- err
	}()
	for {
		d.mu.Lock()
		n := len(d.inFlight)
		d.mu.Unlock()
		if n == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	f2 := open()
	defer f2.Close()
	second := make(chan []byte, 1)
	go func() {
		sum, err := d.digest(context.Background(), f2, "big")
		if err != nil {
			t.Error(err)
		}
		second <- sum
	}()
	for {
		d.mu.Lock()
		n := 0
		for _, c := range d.inFlight {
			n = c.waiters
		}
		d.mu.Unlock()
		if n == 2 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel1()
	if err := <-first; err == nil {
		t.Log("the first caller finished before it was cancelled")
	}
	if sum := <-second; string(sum) != string(want[:]) {
		t.Fatalf("the waiting request got %x, want %x", sum, want)
	}
}

// The lock table is bounded in count and in time.
func TestLockTableBounded(t *testing.T) {
	b := newBoundedLocks()
	now := time.Now()
	for i := 0; i < maxLocks; i++ {
		if _, err := b.Create(now, webdav.LockDetails{Root: fmt.Sprintf("/f%d", i), Duration: -1}); err != nil {
			t.Fatalf("lock %d: %v", i, err)
		}
	}
	if _, err := b.Create(now, webdav.LockDetails{Root: "/one-more", Duration: -1}); err != webdav.ErrLocked {
		t.Fatalf("lock beyond the cap: %v, want ErrLocked", err)
	}
	// an infinite lock lasts maxLockTimeout: after that the table has room again
	later := now.Add(maxLockTimeout + time.Second)
	if _, err := b.Create(later, webdav.LockDetails{Root: "/one-more", Duration: time.Minute}); err != nil {
		t.Fatalf("after the locks lapsed: %v", err)
	}
}
