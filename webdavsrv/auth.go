package webdavsrv

import (
	"bufio"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// htpasswd checks HTTP basic credentials against an Apache htpasswd file of bcrypt hashes
// (htpasswd -B). A bcrypt check costs milliseconds, which would cap a sync of many small
// files, so a verified password is remembered for credTTL as an HMAC under a key that lives
// only in this process: the password itself is never stored. The file is re-read when it
// changes, and a change of a user's hash forgets what was remembered for that user.
type htpasswd struct {
	path string
	log  *slog.Logger

	mu      sync.Mutex
	users   map[string]string // user → bcrypt hash
	cost    int               // the highest bcrypt cost in the file: what an unknown user pays
	stamp   string            // size and mtime of the file last read
	checked time.Time
	key     [32]byte
	cache   map[string]credEntry
}

type credEntry struct {
	mac   []byte
	hash  string
	until time.Time
}

const (
	credTTL       = time.Minute
	reloadEvery   = 2 * time.Second
	maxHtpasswd   = 4 << 20
	maxCredLength = 1024
)

// dummyHashes holds, per bcrypt cost, a hash compared against for unknown users, so an
// unknown user costs what a known one does and timing does not reveal which users exist.
// Made on first use: at package init it cost every drepo command 75 ms.
var dummyHashes sync.Map // cost → []byte

func dummyHash(cost int) []byte {
	if h, ok := dummyHashes.Load(cost); ok {
		return h.([]byte)
	}
	h, err := bcrypt.GenerateFromPassword([]byte("drepo-dummy"), cost)
	if err != nil {
		h, _ = bcrypt.GenerateFromPassword([]byte("drepo-dummy"), bcrypt.DefaultCost)
	}
	dummyHashes.Store(cost, h)
	return h
}

func loadHtpasswd(path string, log *slog.Logger) (*htpasswd, error) {
	h := &htpasswd{path: path, log: log, cache: map[string]credEntry{}}
	if _, err := rand.Read(h.key[:]); err != nil {
		return nil, err
	}
	if err := h.reload(true); err != nil {
		return nil, err
	}
	return h, nil
}

// reload re-reads the file if its size or mtime changed; must hold mu (or be in construction).
func (h *htpasswd) reload(first bool) error {
	fi, err := os.Stat(h.path)
	if err != nil {
		return fmt.Errorf("webdavsrv: htpasswd: %w", err)
	}
	stamp := fmt.Sprint(fi.Size(), fi.ModTime().UnixNano())
	if !first && stamp == h.stamp {
		return nil
	}
	if fi.Size() > maxHtpasswd {
		return fmt.Errorf("webdavsrv: htpasswd %s: larger than %d bytes", h.path, maxHtpasswd)
	}
	f, err := os.Open(h.path)
	if err != nil {
		return fmt.Errorf("webdavsrv: htpasswd: %w", err)
	}
	defer f.Close()
	users := map[string]string{}
	sc := bufio.NewScanner(f)
	line := 0
	for sc.Scan() {
		line++
		t := strings.TrimSpace(sc.Text())
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		user, hash, ok := strings.Cut(t, ":")
		if !ok || user == "" {
			return fmt.Errorf("webdavsrv: htpasswd %s:%d: want user:hash", h.path, line)
		}
		if !strings.HasPrefix(hash, "$2y$") && !strings.HasPrefix(hash, "$2a$") && !strings.HasPrefix(hash, "$2b$") {
			h.log.Warn("htpasswd: only bcrypt hashes are accepted (htpasswd -B); user ignored", "file", h.path, "line", line, "user", user)
			continue
		}
		users[user] = hash
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("webdavsrv: htpasswd %s: %w", h.path, err)
	}
	cost := bcrypt.DefaultCost
	if len(users) > 0 {
		cost = bcrypt.MinCost
		for _, hash := range users {
			if c, err := bcrypt.Cost([]byte(hash)); err == nil && c > cost {
				cost = c
			}
		}
	}
	h.users, h.stamp, h.cost = users, stamp, cost
	return nil
}

// check reports whether user and password are valid.
func (h *htpasswd) check(user, pass string) bool {
	if len(user) > maxCredLength || len(pass) > maxCredLength {
		return false
	}
	h.mu.Lock()
	if time.Since(h.checked) > reloadEvery {
		h.checked = time.Now()
		if err := h.reload(false); err != nil {
			h.log.Error("htpasswd reload failed; keeping the users already loaded", "err", err)
		}
	}
	hash, known := h.users[user]
	cost := h.cost
	mac := hmac.New(sha256.New, h.key[:])
	mac.Write([]byte(user + "\x00" + pass))
	sum := mac.Sum(nil)
	if e, ok := h.cache[user]; ok && e.hash == hash && time.Now().Before(e.until) && hmac.Equal(e.mac, sum) {
		h.mu.Unlock()
		return known
	}
	h.mu.Unlock()

	if !known {
		_ = bcrypt.CompareHashAndPassword(dummyHash(cost), []byte(pass))
		return false
	}
	// bcrypt treats $2y$ like $2b$; Go's package accepts $2a$ and $2b$.
	if bcrypt.CompareHashAndPassword([]byte(strings.Replace(hash, "$2y$", "$2b$", 1)), []byte(pass)) != nil {
		return false
	}
	h.mu.Lock()
	h.cache[user] = credEntry{mac: sum, hash: hash, until: time.Now().Add(credTTL)}
	h.mu.Unlock()
	return true
}
