package main

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/drepo-dev/drepo/mirror/dav"

	"gopkg.in/yaml.v3"
)

// nodeDecoder decodes a YAML node tree into a struct by its yaml tags, refusing unknown keys
// and wrong types with "file:line: field.path: reason" errors. yaml.v3's own errors name the
// line but not the field, which is what an admin needs to fix a 200-line file.
type nodeDecoder struct {
	file  string
	lines map[string]int // field path → line, for validate's errors
	plain []string       // fields holding a plain-text password
}

func (d *nodeDecoder) errAt(line int, path, format string, args ...any) error {
	return fmt.Errorf("%s:%d: %s: %s: %w", d.file, line, path, fmt.Sprintf(format, args...), errConfig)
}

// errf reports a validation error on an already decoded field, at its line.
func (d nodeDecoder) errf(path, format string, args ...any) error {
	line, ok := d.lines[path]
	if !ok { // the field was left out: point at its parent
		if i := strings.LastIndexByte(path, '.'); i > 0 {
			line = d.lines[path[:i]]
		}
	}
	return d.errAt(line, path, format, args...)
}

func (d nodeDecoder) warnings(c *Config) []string {
	var w []string
	for _, p := range d.plain {
		w = append(w, fmt.Sprintf("%s:%d: %s: a plain password in the config file; prefer password_file or password_env", d.file, d.lines[p], p))
	}
	return w
}

var secretType = reflect.TypeFor[dav.Secret]()

func (d *nodeDecoder) decode(n *yaml.Node, out any, path string) error {
	if d.lines == nil {
		d.lines = map[string]int{}
	}
	return d.value(n, reflect.ValueOf(out).Elem(), path)
}

func (d *nodeDecoder) value(n *yaml.Node, v reflect.Value, path string) error {
	if path != "" {
		d.lines[path] = n.Line
	}
	if n.Kind == yaml.AliasNode {
		return d.errAt(n.Line, path, "YAML aliases are not supported")
	}
	if n.Tag == "!!null" {
		return nil // leave the default
	}
	name := path
	if name == "" {
		name = "(top level)"
	}
	switch {
	case v.Type() == secretType:
		if n.Kind != yaml.ScalarNode {
			return d.errAt(n.Line, name, "must be a string")
		}
		v.Set(reflect.ValueOf(dav.NewSecret(n.Value)))
		if n.Value != "" {
			d.plain = append(d.plain, path)
		}
		return nil
	case v.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return d.errAt(n.Line, name, "must be a mapping of keys")
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			f, ok := fieldByTag(v, k.Value)
			sub := k.Value
			if path != "" {
				sub = path + "." + k.Value
			}
			if !ok {
				return d.errAt(k.Line, sub, "unknown key")
			}
			if err := d.value(val, f, sub); err != nil {
				return err
			}
		}
		return nil
	case v.Kind() == reflect.Pointer:
		e := reflect.New(v.Type().Elem())
		if err := d.value(n, e.Elem(), path); err != nil {
			return err
		}
		v.Set(e)
		return nil
	case v.Kind() == reflect.Map && v.Type().Key().Kind() == reflect.String:
		if n.Kind != yaml.MappingNode {
			return d.errAt(n.Line, name, "must be a mapping of keys")
		}
		if len(n.Content) > 2000 {
			return d.errAt(n.Line, name, "more than 1000 entries")
		}
		m := reflect.MakeMap(v.Type())
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				return d.errAt(k.Line, name, "keys must be plain strings")
			}
			sub := path + "." + k.Value
			if m.MapIndex(reflect.ValueOf(k.Value)).IsValid() {
				return d.errAt(k.Line, sub, "duplicate key")
			}
			e := reflect.New(v.Type().Elem()).Elem()
			if err := d.value(val, e, sub); err != nil {
				return err
			}
			m.SetMapIndex(reflect.ValueOf(k.Value), e)
		}
		v.Set(m)
		return nil
	case v.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return d.errAt(n.Line, name, "must be a list")
		}
		if len(n.Content) > 1000 {
			return d.errAt(n.Line, name, "more than 1000 entries")
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, e := range n.Content {
			if err := d.value(e, s.Index(i), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		v.Set(s)
		return nil
	}
	if n.Kind != yaml.ScalarNode {
		return d.errAt(n.Line, name, "must be a single value")
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(n.Value)
	case reflect.Int:
		if n.Tag != "!!int" {
			return d.errAt(n.Line, name, "must be an integer")
		}
		i, err := strconv.ParseInt(n.Value, 0, 32)
		if err != nil {
			return d.errAt(n.Line, name, "must be an integer")
		}
		v.SetInt(i)
	case reflect.Bool:
		if n.Tag != "!!bool" {
			return d.errAt(n.Line, name, "must be true or false")
		}
		b, _ := strconv.ParseBool(strings.ToLower(n.Value))
		v.SetBool(b)
	default:
		return d.errAt(n.Line, name, "unsupported type %s", v.Type())
	}
	return nil
}

func fieldByTag(v reflect.Value, key string) (reflect.Value, bool) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		if tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]; tag == key && t.Field(i).IsExported() {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}
