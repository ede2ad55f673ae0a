package dav

import "log/slog"

// NewSecret wraps a password.
func NewSecret(v string) Secret { return Secret{v} }

// Secret holds a password. Every way of printing it (fmt, slog, JSON, YAML) shows "***", so
// a secret cannot reach a log line, an error or `drepo config show` by accident.
type Secret struct{ v string }

// Reveal returns the secret itself, for the one place that sends it (HTTP basic auth).
func (s Secret) Reveal() string { return s.v }

// IsZero reports whether no secret is set (also used by json's omitzero).
func (s Secret) IsZero() bool { return s.v == "" }

func (s Secret) String() string { return mask(s.v) }

// GoString keeps %#v from printing the field.
func (s Secret) GoString() string { return mask(s.v) }

// LogValue masks the secret in slog output.
func (s Secret) LogValue() slog.Value { return slog.StringValue(mask(s.v)) }

// MarshalJSON masks the secret in JSON output.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + mask(s.v) + `"`), nil }

// MarshalYAML masks the secret in YAML output.
func (s Secret) MarshalYAML() (any, error) { return mask(s.v), nil }

func mask(v string) string {
	if v == "" {
		return ""
	}
	return "***"
}
