package manifests

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"aead.dev/minisign"
)

// needTool returns the path of a command the test needs: under CI=true a missing tool fails
// the test (make test installs it); elsewhere the test is skipped with a message.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed (make test installs it)", name)
	}
	t.Skipf("%s is not installed; run make test to install it", name)
	return ""
}

func writeKeys(t *testing.T, dir string) (sec, pub string) {
	t.Helper()
	s, p, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	sec, pub = filepath.Join(dir, "k.key"), filepath.Join(dir, "k.pub")
	if err := os.WriteFile(sec, s, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pub, p, 0o644); err != nil {
		t.Fatal(err)
	}
	return sec, pub
}

func TestSignVerify(t *testing.T) {
	dir := t.TempDir()
	secPath, pubPath := writeKeys(t, dir)
	sec, err := LoadSecretKey(secPath)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := LoadPublicKey(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := sampleIndex().Encode()
	sig := Sign(sec, doc, time.Now())
	x, err := VerifyIndex([]minisign.PublicKey{pub}, doc, sig)
	if err != nil || x.Serial != 7 {
		t.Fatalf("VerifyIndex = %v, %v", x, err)
	}
	tampered := append([]byte{}, doc...)
	tampered[len(tampered)-3] ^= 1
	if _, err := VerifyIndex([]minisign.PublicKey{pub}, tampered, sig); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("tampered: err = %v", err)
	}
	_, otherPub := writeKeys(t, t.TempDir())
	other, _ := LoadPublicKey(otherPub)
	want := fmt.Sprintf("signed by key %016X, which is not in trusted_keys (trusted: %016X)", pub.ID(), other.ID())
	if _, err := VerifyIndex([]minisign.PublicKey{other}, doc, sig); !errors.Is(err, ErrBadSignature) || !strings.Contains(err.Error(), want) {
		t.Fatalf("wrong key: err = %v, want it to say %q", err, want)
	}
	if _, err := VerifyIndex([]minisign.PublicKey{pub}, doc, []byte("garbage")); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("garbage sig: err = %v", err)
	}
}

// TestMinisignInterop proves Debian's minisign accepts what we sign and we accept what it signs.
func TestMinisignInterop(t *testing.T) {
	ms := needTool(t, "minisign")
	dir := t.TempDir()
	secPath, pubPath := writeKeys(t, dir)
	sec, _ := LoadSecretKey(secPath)
	doc, _ := sampleIndex().Encode()
	docPath := filepath.Join(dir, "index.json")
	if err := os.WriteFile(docPath, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(docPath+".minisig", Sign(sec, doc, time.Now()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(ms, "-Vm", docPath, "-p", pubPath).CombinedOutput(); err != nil {
		t.Fatalf("minisign refused our signature: %v\n%s", err, out)
	}
	// the other way: a key and signature made by minisign itself
	msPub, msSec := filepath.Join(dir, "ms.pub"), filepath.Join(dir, "ms.key")
	if out, err := exec.Command(ms, "-G", "-W", "-p", msPub, "-s", msSec).CombinedOutput(); err != nil {
		t.Fatalf("minisign -G: %v\n%s", err, out)
	}
	msDoc := filepath.Join(dir, "ms-index.json")
	if err := os.WriteFile(msDoc, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(ms, "-Sm", msDoc, "-s", msSec).CombinedOutput(); err != nil {
		t.Fatalf("minisign -S: %v\n%s", err, out)
	}
	sig, err := os.ReadFile(msDoc + ".minisig")
	if err != nil {
		t.Fatal(err)
	}
	pub, err := LoadPublicKey(msPub)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyIndex([]minisign.PublicKey{pub}, doc, sig); err != nil {
		t.Fatalf("we refused minisign's signature: %v", err)
	}
	// and a secret key minisign made (unencrypted) signs for us too
	k, err := LoadSecretKey(msSec)
	if err != nil {
		t.Fatalf("minisign's unencrypted secret key: %v", err)
	}
	if err := Verify([]minisign.PublicKey{pub}, doc, Sign(k, doc, time.Now())); err != nil {
		t.Fatal(err)
	}
}
