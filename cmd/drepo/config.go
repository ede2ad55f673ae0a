package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/drepo-dev/drepo/manifests"
	"github.com/drepo-dev/drepo/mirror"
	"github.com/drepo-dev/drepo/mirror/dav"
)

// Config is the one YAML file that serves admin and device (DESIGN.md). Paths in it are
// resolved relative to the folder of the file, so a config and its keys can move together.
type Config struct {
	Source      string   `yaml:"source,omitempty" json:"source,omitempty"`
	SigningKey  string   `yaml:"signing_key,omitempty" json:"signing_key,omitempty"`
	TrustedKeys []string `yaml:"trusted_keys,omitempty" json:"trusted_keys,omitempty"`
	Store       string   `yaml:"store,omitempty" json:"store,omitempty"`
	// AllowUnsigned lets a device without trusted_keys fetch from repositories whose index
	// is not signed (loudly; never from peers).
	AllowUnsigned bool         `yaml:"allow_unsigned,omitempty" json:"allow_unsigned,omitempty"`
	StateDir      string       `yaml:"state_dir,omitempty" json:"state_dir,omitempty"`
	Repositories  []Repository `yaml:"repositories" json:"repositories"`
	Peers         Peers        `yaml:"peers" json:"peers"`
	Serve         Serve        `yaml:"serve" json:"serve"`
	Keep          Keep         `yaml:"keep" json:"keep"`
	// ChunkSize is the chunk size of the manifests sync builds (a size: 1M, 4M; default
	// 1 MiB). A LAN passes a blob on one chunk at a time, so smaller chunks make shorter hops
	// (README: How a device picks its sources). A published version keeps its manifest: sync
	// refuses to change its chunk size (like any change) unless --republish.
	ChunkSize string `yaml:"chunk_size,omitempty" json:"chunk_size,omitempty"`
	// Publish is the release gate: "direct" (default) has sync update every repository;
	// "gated" has sync update only staging (priority < 0), and drepo promote brings the
	// live ones to the very index tested there.
	Publish string `yaml:"publish,omitempty" json:"publish,omitempty"`
	// Deltas is how many earlier versions of an app each new file gets a delta from
	// (default 2; 0: none, for fleets with devices that read only v1 manifests).
	Deltas *int `yaml:"deltas,omitempty" json:"deltas,omitempty"`
	// Packed keeps a chunk-by-chunk compressed blob of each file where it saves a tenth
	// (default true; false for fleets with devices that read only v1 manifests).
	Packed *bool `yaml:"packed,omitempty" json:"packed,omitempty"`

	path  string         // the file this came from
	lines map[string]int // field path → line, for errors found after loading (secrets)
}

// Keep is sync's retention: how many versions per app the index publishes (newest first),
// so a cron sync keeps the same catalogue run after run. 0 keeps every version.
type Keep struct {
	Versions int            `yaml:"versions" json:"versions"`
	Apps     map[string]int `yaml:"apps,omitempty" json:"apps,omitempty"`
}

// Repository is one WebDAV repository. Priority −1 (any negative) is staging: synced and
// verified, never read by devices.
type Repository struct {
	Name         string     `yaml:"name" json:"name"`
	URL          string     `yaml:"url" json:"url"`
	Priority     int        `yaml:"priority" json:"priority"`
	Username     string     `yaml:"username,omitempty" json:"username,omitempty"`
	Password     dav.Secret `yaml:"password,omitempty" json:"password,omitzero"`
	PasswordFile string     `yaml:"password_file,omitempty" json:"password_file,omitempty"`
	PasswordEnv  string     `yaml:"password_env,omitempty" json:"password_env,omitempty"`
	CACert       string     `yaml:"ca_cert,omitempty" json:"ca_cert,omitempty"`
	ClientCert   string     `yaml:"client_cert,omitempty" json:"client_cert,omitempty"`
	ClientKey    string     `yaml:"client_key,omitempty" json:"client_key,omitempty"`
	// DeltasOnly: sync sends deltas instead of files where this repository holds the base.
	DeltasOnly bool `yaml:"deltas_only,omitempty" json:"deltas_only,omitempty"`
}

// Peers configures the device's peer server and discovery (IGEL's ports by default).
type Peers struct {
	Enabled   bool   `yaml:"enabled" json:"enabled"`
	HTTPPort  int    `yaml:"http_port" json:"http_port"`
	HTTPSPort int    `yaml:"https_port" json:"https_port"`
	HTTPS     bool   `yaml:"https" json:"https"`
	TLSCert   string `yaml:"tls_cert,omitempty" json:"tls_cert,omitempty"`
	TLSKey    string `yaml:"tls_key,omitempty" json:"tls_key,omitempty"`
	// CACert is the fleet's CA: set, fetch reads peers only over HTTPS from peers with a
	// certificate it issued (showing tls_cert), and the peer server checks clients' ones.
	CACert string `yaml:"ca_cert,omitempty" json:"ca_cert,omitempty"`
	// RequireClientCert makes the peer server serve its store only over HTTPS to devices
	// with a certificate from CACert (plain HTTP then serves /metrics only).
	RequireClientCert  bool     `yaml:"require_client_cert" json:"require_client_cert"`
	DiscoveryPort      int      `yaml:"discovery_port" json:"discovery_port"`
	LimitOfConnections int      `yaml:"limit_of_connections" json:"limit_of_connections"`
	Static             []string `yaml:"static,omitempty" json:"static,omitempty"`
	// Broadcast sends discovery requests to the LAN's broadcast addresses; false keeps
	// discovery to Static (tests on loopback, sites that forbid broadcast).
	Broadcast bool `yaml:"broadcast" json:"broadcast"`
	// Priority places the peers among the repositories for fetch: before those of lower
	// priority. Unset: after every repository.
	Priority *int `yaml:"priority,omitempty" json:"priority,omitempty"`
}

// Serve configures `drepo serve`; flags override it.
type Serve struct {
	Root          string `yaml:"root,omitempty" json:"root,omitempty"`
	Listen        string `yaml:"listen,omitempty" json:"listen,omitempty"`
	Htpasswd      string `yaml:"htpasswd,omitempty" json:"htpasswd,omitempty"`
	AnonymousRead bool   `yaml:"anonymous_read" json:"anonymous_read"`
	TLSCert       string `yaml:"tls_cert,omitempty" json:"tls_cert,omitempty"`
	TLSKey        string `yaml:"tls_key,omitempty" json:"tls_key,omitempty"`
	MaxUpload     string `yaml:"max_upload,omitempty" json:"max_upload,omitempty"`
	DepthInfinity bool   `yaml:"depth_infinity" json:"depth_infinity"`
}

// defaultConfig holds the values a key takes when the file leaves it out.
func defaultConfig() Config {
	return Config{
		Peers: Peers{Enabled: true, HTTPPort: 22335, HTTPSPort: 22337, DiscoveryPort: 22336, LimitOfConnections: 1, Broadcast: true},
		Serve: Serve{Listen: ":8080", DepthInfinity: true},
	}
}

// errConfig marks a configuration problem (exit code 2).
var errConfig = errors.New("configuration error")

// maxConfigSize bounds the config file; a real one is a few KB.
const maxConfigSize = 1 << 20

// configCandidates lists where the config is looked for, in order.
func configCandidates(flag string) []string {
	if flag != "" {
		return []string{flag}
	}
	if env := os.Getenv("DREPO_CONFIG"); env != "" {
		return []string{env}
	}
	return []string{"drepo.yaml", "/etc/drepo/drepo.yaml"}
}

// findConfig returns the first candidate that exists. An explicit --config or DREPO_CONFIG
// that does not exist is an error rather than a silent fallback.
func findConfig(flag string) (string, error) {
	c := configCandidates(flag)
	for _, p := range c {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		} else if flag != "" || os.Getenv("DREPO_CONFIG") != "" {
			return "", fmt.Errorf("config %s: %w: %w", p, err, errConfig)
		}
	}
	return "", fmt.Errorf("no config file found (tried %s; use --config FILE or DREPO_CONFIG): %w", strings.Join(c, ", "), errConfig)
}

// loadConfig reads, decodes, validates and resolves the config file at path. Warnings (such
// as a plain-text password) are returned for the caller to log.
func loadConfig(path string) (*Config, []string, error) {
	b, err := manifests.ReadSmallFile(path, manifests.MaxConfigFile)
	if err != nil {
		return nil, nil, fmt.Errorf("config: %w: %w", err, errConfig)
	}
	cfg, warns, err := parseConfig(filepath.Base(path), b)
	if err != nil {
		return nil, nil, err
	}
	cfg.path = path
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, nil, fmt.Errorf("config: %w: %w", err, errConfig)
	}
	if err := cfg.resolve(dir); err != nil {
		return nil, nil, err
	}
	return cfg, warns, nil
}

// parseConfig decodes and validates a config document; name prefixes every error.
func parseConfig(name string, b []byte) (*Config, []string, error) {
	if len(b) > maxConfigSize {
		return nil, nil, fmt.Errorf("%s: %d bytes, limit %d: %w", name, len(b), maxConfigSize, errConfig)
	}
	cfg := defaultConfig()
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, nil, fmt.Errorf("%s: %s: %w", name, strings.TrimPrefix(err.Error(), "yaml: "), errConfig)
	}
	if len(root.Content) > 0 {
		d := nodeDecoder{file: name}
		if err := d.decode(root.Content[0], &cfg, ""); err != nil {
			return nil, nil, err
		}
		if err := cfg.validate(d); err != nil {
			return nil, nil, err
		}
		cfg.lines = d.lines
		return &cfg, d.warnings(&cfg), nil
	}
	return &cfg, nil, nil
}

var repoNameRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// validate checks values the types alone do not; errors name file, line and field.
func (c *Config) validate(d nodeDecoder) error {
	seen := map[string]bool{}
	for i, r := range c.Repositories {
		at := func(field string) string { return fmt.Sprintf("repositories[%d].%s", i, field) }
		if !repoNameRE.MatchString(r.Name) {
			return d.errf(at("name"), "must be 1 to 64 of A-Z a-z 0-9 . _ -")
		}
		if seen[r.Name] {
			return d.errf(at("name"), "duplicate repository name %q", r.Name)
		}
		seen[r.Name] = true
		u, err := url.Parse(r.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return d.errf(at("url"), "must be an http:// or https:// URL")
		}
		if u.User != nil {
			return d.errf(at("url"), "must not carry credentials; use username and password_file")
		}
		n := 0
		for _, s := range []bool{!r.Password.IsZero(), r.PasswordFile != "", r.PasswordEnv != ""} {
			if s {
				n++
			}
		}
		if n > 1 {
			return d.errf(at("password"), "set only one of password, password_file, password_env")
		}
		if (r.ClientCert == "") != (r.ClientKey == "") {
			return d.errf(at("client_cert"), "client_cert and client_key go together")
		}
	}
	p := c.Peers
	for field, port := range map[string]int{"http_port": p.HTTPPort, "https_port": p.HTTPSPort, "discovery_port": p.DiscoveryPort} {
		if port < 1 || port > 65535 {
			return d.errf("peers."+field, "must be a port number 1..65535")
		}
	}
	if p.LimitOfConnections < 1 {
		return d.errf("peers.limit_of_connections", "must be at least 1")
	}
	if (p.TLSCert == "") != (p.TLSKey == "") {
		return d.errf("peers.tls_cert", "tls_cert and tls_key go together")
	}
	if p.RequireClientCert && (p.CACert == "" || !p.HTTPS || p.TLSCert == "") {
		return d.errf("peers.require_client_cert", "needs peers.ca_cert, peers.https: true, and tls_cert and tls_key from that CA")
	}
	for i, st := range p.Static {
		if st == "" || strings.ContainsAny(st, " /") {
			return d.errf(fmt.Sprintf("peers.static[%d]", i), "must be host or host:port")
		}
		if _, port, err := net.SplitHostPort(st); err == nil {
			if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
				return d.errf(fmt.Sprintf("peers.static[%d]", i), "port must be 1..65535")
			}
		}
	}
	if c.Keep.Versions < 0 {
		return d.errf("keep.versions", "must be 0 (every version) or more")
	}
	for app, n := range c.Keep.Apps {
		if err := manifests.ValidateName("app", app); err != nil {
			return d.errf("keep.apps", "%v", err)
		}
		if n < 0 {
			return d.errf("keep.apps."+app, "must be 0 (every version) or more")
		}
	}
	if (c.Serve.TLSCert == "") != (c.Serve.TLSKey == "") {
		return d.errf("serve.tls_cert", "tls_cert and tls_key go together")
	}
	if c.Serve.MaxUpload != "" {
		if _, err := parseSize(c.Serve.MaxUpload); err != nil {
			return d.errf("serve.max_upload", "%v", err)
		}
	}
	if c.ChunkSize != "" {
		if _, err := c.chunkSize(); err != nil {
			return d.errf("chunk_size", "%v", err)
		}
	}
	if c.Deltas != nil && (*c.Deltas < 0 || *c.Deltas > manifests.MaxDeltas) {
		return d.errf("deltas", "must be 0..%d", manifests.MaxDeltas)
	}
	if c.Publish != "" && c.Publish != publishDirect && c.Publish != publishGated {
		return d.errf("publish", "must be direct or gated")
	}
	return nil
}

// chunkSize is chunk_size in bytes (0: the default): 64 KiB to 256 MiB, a multiple of
// 4 KiB (devices write whole chunks past the page cache, which wants 4 KiB alignment).
func (c *Config) chunkSize() (int64, error) {
	if c.ChunkSize == "" {
		return 0, nil
	}
	n, err := parseSize(c.ChunkSize)
	if err != nil {
		return 0, err
	}
	if n < manifests.MinChunkSize || n > manifests.MaxChunkSize || n%4096 != 0 {
		return 0, fmt.Errorf("%d bytes: want 64K to 256M, a multiple of 4K", n)
	}
	return n, nil
}

// resolve makes paths absolute (relative to the config's folder). Secrets are read only
// when a command uses their repository (secret), so one repository's missing password does
// not break commands that never talk to it.
func (c *Config) resolve(dir string) error {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	abs(&c.Source)
	abs(&c.SigningKey)
	abs(&c.Store)
	abs(&c.StateDir)
	for i := range c.TrustedKeys {
		abs(&c.TrustedKeys[i])
	}
	for _, p := range []*string{&c.Peers.TLSCert, &c.Peers.TLSKey, &c.Peers.CACert, &c.Serve.Root, &c.Serve.Htpasswd, &c.Serve.TLSCert, &c.Serve.TLSKey} {
		abs(p)
	}
	for i := range c.Repositories {
		r := &c.Repositories[i]
		for _, p := range []*string{&r.PasswordFile, &r.CACert, &r.ClientCert, &r.ClientKey} {
			abs(p)
		}
	}
	return nil
}

// sourceDir returns the source folder; unset or missing is a configuration error (exit 2),
// since a sync of a folder that is not there must not run at all.
func (c *Config) sourceDir(hint string) (string, error) {
	if c.Source == "" {
		return "", fmt.Errorf("%s:%d: source: not set%s: %w", filepath.Base(c.path), c.lines["source"], hint, errConfig)
	}
	fi, err := os.Stat(c.Source)
	if err != nil {
		return "", fmt.Errorf("%s:%d: source: %w: %w", filepath.Base(c.path), c.lines["source"], err, errConfig)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("%s:%d: source: %s is not a folder: %w", filepath.Base(c.path), c.lines["source"], c.Source, errConfig)
	}
	return c.Source, nil
}

// secret returns repository i's password from password, password_file or password_env;
// errors name the config file and line.
func (c *Config) secret(i int) (dav.Secret, error) {
	r := c.Repositories[i]
	at := func(field, format string, args ...any) error {
		path := fmt.Sprintf("repositories[%d].%s", i, field)
		return fmt.Errorf("%s:%d: %s: %s: %w", filepath.Base(c.path), c.lines[path], path, fmt.Sprintf(format, args...), errConfig)
	}
	switch {
	case r.PasswordFile != "":
		f, err := os.Open(r.PasswordFile)
		if err != nil {
			return dav.Secret{}, at("password_file", "%v", err)
		}
		defer f.Close()
		b, err := manifests.ReadLimited(f, 4096)
		if err != nil {
			return dav.Secret{}, at("password_file", "%v", err)
		}
		return dav.NewSecret(strings.TrimRight(string(b), "\r\n")), nil
	case r.PasswordEnv != "":
		v, ok := os.LookupEnv(r.PasswordEnv)
		if !ok {
			return dav.Secret{}, at("password_env", "environment variable %s is not set", r.PasswordEnv)
		}
		return dav.NewSecret(v), nil
	}
	return r.Password, nil
}

// The release gate's settings (Config.Publish).
const (
	publishDirect = "direct"
	publishGated  = "gated"
)

// gated reports whether sync publishes to staging only (Config.Publish).
func (c *Config) gated() bool { return c.Publish == publishGated }

// deltaVersions is Config.Deltas with its default.
func (c *Config) deltaVersions() int {
	if c.Deltas == nil {
		return mirror.DefaultDeltaVersions
	}
	return *c.Deltas
}

// packed is Config.Packed with its default.
func (c *Config) packed() bool { return c.Packed == nil || *c.Packed }
