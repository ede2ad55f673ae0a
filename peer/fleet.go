package peer

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"

	"github.com/drepo-dev/drepo/manifests"
)

// Authenticated peers (peers.ca_cert): the fleet's CA issues every device a certificate,
// as a management server does. A device that has the CA fetches from peers only over
// HTTPS, from a peer whose certificate chains to the CA, and shows its own certificate;
// a peer server with peers.require_client_cert serves its store over HTTPS only, to
// devices with a certificate from the CA. A forged discovery answer then leads to a TLS
// handshake that fails before any request is sent. The certificate names a device, not
// an address (devices move between addresses, DHCP), so no name is checked: the chain to
// the fleet's CA is the authentication.

// FleetClientTLS is the TLS a fetch uses with its peers when peers.ca_cert is set: the
// peer's certificate must chain to the CA in caFile (for server use); this device's own
// certificate and key, when given, go along for peers that require one.
func FleetClientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	pool, err := manifests.LoadCertPool(caFile)
	if err != nil {
		return nil, fmt.Errorf("peer: peers.ca_cert: %w", err)
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// the chain is checked below, against the fleet's CA, without a name
		InsecureSkipVerify:    true,
		VerifyPeerCertificate: verifyChain(pool, x509.ExtKeyUsageServerAuth),
	}
	if certFile != "" || keyFile != "" {
		pair, err := manifests.LoadKeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("peer: peers.tls_cert: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// verifyChain checks that the certificate a peer presented chains to pool, for usage.
func verifyChain(pool *x509.CertPool, usage x509.ExtKeyUsage) func([][]byte, [][]*x509.Certificate) error {
	return func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 || len(raw) > 8 {
			return errors.New("peer: the peer presented no certificate, or too many")
		}
		certs := make([]*x509.Certificate, 0, len(raw))
		for _, r := range raw {
			c, err := x509.ParseCertificate(r)
			if err != nil {
				return fmt.Errorf("peer: the peer's certificate: %w", err)
			}
			certs = append(certs, c)
		}
		inter := x509.NewCertPool()
		for _, c := range certs[1:] {
			inter.AddCert(c)
		}
		if _, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			return fmt.Errorf("peer: the peer's certificate is not from the fleet's CA: %w", err)
		}
		return nil
	}
}

// fleetServerTLS adds the fleet's CA to a peer server's TLS: a client certificate from
// it is required (require) or checked when given.
func fleetServerTLS(cfg *tls.Config, caFile string, require bool) error {
	pool, err := manifests.LoadCertPool(caFile)
	if err != nil {
		return fmt.Errorf("peer: peers.ca_cert: %w", err)
	}
	cfg.ClientCAs = pool
	cfg.ClientAuth = tls.VerifyClientCertIfGiven
	if require {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return nil
}

// plainOnlyMetrics is the plain-HTTP handler of a peer server that requires client
// certificates: /metrics for the site's monitoring, nothing of the store.
func plainOnlyMetrics(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" {
			h.ServeHTTP(w, r)
			return
		}
		http.Error(w, "this peer serves its store over HTTPS, to devices with a certificate from the fleet's CA", http.StatusForbidden)
	})
}
