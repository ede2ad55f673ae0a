package manifests

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"syscall"
)

// Bounds of the small files drepo reads that an admin names (keys, certificates, the
// config): a path set to /dev/zero or a log file by mistake gets a clear error, not all
// of the machine's memory.
const (
	MaxKeyFile    = 64 << 10
	MaxCertFile   = 1 << 20
	MaxConfigFile = 1 << 20
)

// ReadSmallFile reads the file at path, which must be a regular file (symlinks followed:
// certificates often are) of at most max bytes. A FIFO or device does not block it.
func ReadSmallFile(path string, max int64) ([]byte, error) { return ReadBounded(path, max, false) }

// ReadBounded reads the regular file at path of at most max bytes; with noFollow, a
// symlink in its last element is refused (ELOOP) instead of followed: how a store reads
// the files it keeps, so a planted link reaches nothing.
func ReadBounded(path string, max int64, noFollow bool) ([]byte, error) {
	flag := os.O_RDONLY | syscall.O_NONBLOCK | syscall.O_CLOEXEC
	if noFollow {
		flag |= syscall.O_NOFOLLOW
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if fi.Size() > max {
		return nil, fmt.Errorf("%s is %d bytes, more than the %d such a file may be", path, fi.Size(), max)
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err == nil && int64(len(b)) > max {
		return nil, fmt.Errorf("%s grew past %d bytes", path, max)
	}
	return b, err
}

// LoadKeyPair loads a TLS certificate and key like tls.LoadX509KeyPair, each file read
// with ReadSmallFile; an error names the file at fault.
func LoadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	cert, cerr := ReadSmallFile(certFile, MaxCertFile)
	key, kerr := ReadSmallFile(keyFile, MaxCertFile)
	switch {
	case cerr != nil && kerr != nil:
		return tls.Certificate{}, fmt.Errorf("certificate %s: %w; key %s: %w", certFile, cerr, keyFile, kerr)
	case cerr != nil:
		return tls.Certificate{}, fmt.Errorf("certificate %s: %w", certFile, cerr)
	case kerr != nil:
		return tls.Certificate{}, fmt.Errorf("key %s: %w", keyFile, kerr)
	}
	pair, err := tls.X509KeyPair(cert, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate %s / key %s: %w", certFile, keyFile, err)
	}
	return pair, nil
}

// LoadCertPool reads a PEM file of CA certificates (ReadSmallFile) into a pool.
func LoadCertPool(path string) (*x509.CertPool, error) {
	pem, err := ReadSmallFile(path, MaxCertFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate in it", path)
	}
	return pool, nil
}
