package main

import (
	"fmt"
	"slices"

	"aead.dev/minisign"

	"github.com/drepo-dev/drepo/manifests"
	"github.com/drepo-dev/drepo/mirror"
	"github.com/drepo-dev/drepo/mirror/dav"
	"github.com/drepo-dev/drepo/peer"
)

// repositories returns the configured repositories, or those named (in config order);
// naming one that does not exist is a usage error.
func (c *Config) repositories(names []string) ([]dav.Repository, error) {
	var out []dav.Repository
	for _, n := range names {
		if !slices.ContainsFunc(c.Repositories, func(r Repository) bool { return r.Name == n }) {
			return nil, usageErrorf("no repository %q in %s", n, c.path)
		}
	}
	for i, r := range c.Repositories {
		if len(names) > 0 && !slices.Contains(names, r.Name) {
			continue
		}
		pw, err := c.secret(i)
		if err != nil {
			return nil, err
		}
		out = append(out, dav.Repository{Name: r.Name, URL: r.URL, Priority: r.Priority, Username: r.Username,
			Password: pw, CACert: r.CACert, ClientCert: r.ClientCert, ClientKey: r.ClientKey, DeltasOnly: r.DeltasOnly})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no repositories configured: %w", c.path, errConfig)
	}
	return out, nil
}

// signingKey loads signing_key.
func (c *Config) signingKey() (minisign.PrivateKey, error) {
	if c.SigningKey == "" {
		return minisign.PrivateKey{}, fmt.Errorf("%s: signing_key is not set: %w", c.path, errConfig)
	}
	k, err := manifests.LoadSecretKey(c.SigningKey)
	if err != nil {
		return minisign.PrivateKey{}, fmt.Errorf("%v: %w", err, errConfig)
	}
	return k, nil
}

// trustedKeys loads trusted_keys, or the public half of signing_key when none are listed.
func (c *Config) trustedKeys() ([]minisign.PublicKey, error) {
	var keys []minisign.PublicKey
	for _, p := range c.TrustedKeys {
		k, err := manifests.LoadPublicKey(p)
		if err != nil {
			return nil, fmt.Errorf("%v: %w", err, errConfig)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 && c.SigningKey != "" {
		k, err := c.signingKey()
		if err != nil {
			return nil, err
		}
		keys = append(keys, k.Public().(minisign.PublicKey))
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s: set trusted_keys (or signing_key) to check signatures: %w", c.path, errConfig)
	}
	return keys, nil
}

func (c *Config) stateDir() string {
	if c.StateDir != "" {
		return c.StateDir
	}
	return mirror.DefaultStateDir()
}

// deviceRepositories returns every configured repository for a device: those it reads
// (priority ≥ 0) with their secrets, and staging ones without, since a device never
// contacts them (they are listed only to say so).
func (c *Config) deviceRepositories() ([]dav.Repository, error) {
	var out []dav.Repository
	for i, r := range c.Repositories {
		repo := dav.Repository{Name: r.Name, URL: r.URL, Priority: r.Priority, Username: r.Username,
			CACert: r.CACert, ClientCert: r.ClientCert, ClientKey: r.ClientKey}
		if !repo.Staging() {
			pw, err := c.secret(i)
			if err != nil {
				return nil, err
			}
			repo.Password = pw
		}
		out = append(out, repo)
	}
	return out, nil
}

// deviceKeys returns the keys a device trusts: trusted_keys, else the public half of
// signing_key; none at all is allowed only with allow_unsigned.
func (c *Config) deviceKeys() ([]minisign.PublicKey, error) {
	if len(c.TrustedKeys) == 0 && c.SigningKey == "" {
		if c.AllowUnsigned {
			return nil, nil
		}
		return nil, fmt.Errorf("%s: set trusted_keys (the public keys that sign your indexes), or allow_unsigned: true to fetch without signatures: %w", c.path, errConfig)
	}
	return c.trustedKeys()
}

// openStore opens the device's store (store: in the config; unset is a config error).
func (c *Config) openStore() (*peer.Store, error) {
	if c.Store == "" {
		return nil, fmt.Errorf("%s: store: not set (the device's store folder): %w", c.path, errConfig)
	}
	return peer.OpenStore(c.Store)
}
