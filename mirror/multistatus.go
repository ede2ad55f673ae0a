package mirror

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/drepo-dev/drepo/manifests"
)

// A PROPFIND answer is the one large XML document sync and verify read: Apache sends about
// 300 bytes per file, one listing per folder. encoding/xml reads it at about 10 MB/s, a
// quarter of verify's CPU for 10,000 blobs, so this file reads it with a small streaming
// scanner of its own: well-formed XML with namespaces, comments, CDATA, processing
// instructions and the five entities plus character references; DOCTYPE is refused. It
// keeps only what FileInfo needs and holds at most msMaxText bytes of text at a time.
// FuzzDecodeMultistatus checks it against encoding/xml.

// Bounds on what one answer may hold at once.
const (
	msMaxDepth  = 256  // open elements
	msMaxName   = 1024 // bytes of an element or attribute name
	msMaxAttr   = 8192 // bytes of one attribute value
	msMaxAttrs  = 256  // attributes of one element
	msMaxText   = 8192 // text kept of an href, status or getcontentlength; the rest is dropped
	msMaxEntity = 16   // bytes between & and ;
	// msMaxPropstat bounds the propstats of one response (a real one has one or two): a
	// hostile answer of one response with millions of them must not fill memory.
	msMaxPropstat = 64
	// MaxListEntries bounds the entries one listing passes on (a repository of this many
	// blobs is far beyond any app catalogue); past it the listing fails.
	MaxListEntries = 4 << 20
)

var errMultistatus = errors.New("mirror: PROPFIND answer")

// davResponse is what one <D:response> says about an entry.
type davResponse struct {
	Href     string
	Propstat []davPropstat
}

type davPropstat struct {
	Status     string
	Collection bool   // prop/resourcetype/collection is present
	Length     string // prop/getcontentlength
}

// msReaders keeps the scanner's 64 KiB read buffers: a listing folder by folder is 257
// PROPFINDs for a repository of any size.
var msReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 64<<10) }}

// decodeMultistatus reads a PROPFIND answer as it streams in, one <response> at a time
// (constant memory for a listing of any size), calling fn for each entry under the base.
func (w *WebDAV) decodeMultistatus(r io.Reader, dir string, fn func(FileInfo) error) error {
	br := msReaders.Get().(*bufio.Reader)
	br.Reset(r)
	defer func() { br.Reset(nil); msReaders.Put(br) }()
	m := &msReader{r: br}
	entries := 0
	err := m.run(func(resp *davResponse) error {
		fi, ok := w.responseInfo(resp, dir)
		if !ok {
			return nil
		}
		if entries++; entries > MaxListEntries {
			return fmt.Errorf("%w: more than %d entries", errMultistatus, MaxListEntries)
		}
		return fn(fi)
	})
	switch {
	case errors.Is(err, errStop):
		return m.stopErr
	case err == nil || errors.Is(err, errMultistatus):
		return err
	}
	return fmt.Errorf("%w: %w", errMultistatus, err) // a read error of the body
}

// responseInfo turns one response into a FileInfo relative to the repository root. The
// name is the server's word, so it must be a clean relative path (manifests.ValidatePath:
// no "..", no control characters) at or under dir, the folder asked for; any other is
// skipped with a warning, since sync and verify build DELETEs and GETs from these names.
func (w *WebDAV) responseInfo(r *davResponse, dir string) (FileInfo, bool) {
	if len(r.Href) > 4096 {
		w.skipName(r.Href[:64]+"…", "longer than 4 KiB")
		return FileInfo{}, false
	}
	u, err := url.Parse(strings.TrimSpace(r.Href))
	if err != nil {
		w.skipName(r.Href, "not a URL")
		return FileInfo{}, false
	}
	if u.Host != "" && (!strings.EqualFold(u.Scheme, w.base.Scheme) || !strings.EqualFold(hostPort(u), hostPort(w.base))) {
		w.skipName(r.Href, "on another server")
		return FileInfo{}, false
	}
	rel, ok := strings.CutPrefix(u.Path, w.base.Path)
	if !ok {
		w.skipName(u.Path, "outside the repository")
		return FileInfo{}, false
	}
	fi := FileInfo{Name: strings.Trim(rel, "/")}
	dir = strings.Trim(dir, "/")
	switch {
	case fi.Name == "" && dir == "":
		return FileInfo{}, false // the root itself
	case manifests.ValidatePath(fi.Name) != nil:
		w.skipName(fi.Name, "not a clean relative path")
		return FileInfo{}, false
	case dir != "" && fi.Name != dir && !strings.HasPrefix(fi.Name, dir+"/"):
		w.skipName(fi.Name, "not under "+dir)
		return FileInfo{}, false
	}
	for _, ps := range r.Propstat {
		if !strings.Contains(ps.Status, " 200") {
			continue
		}
		if ps.Collection {
			fi.IsDir = true
		}
		if n, err := strconv.ParseInt(strings.TrimSpace(ps.Length), 10, 64); err == nil {
			fi.Size = n
		}
	}
	return fi, fi.Name != ""
}

// msRole is what an open element means to the listing.
type msRole uint8

const (
	roleNone msRole = iota
	roleResponse
	roleHref
	rolePropstat
	roleStatus
	roleProp
	roleResourcetype
	roleLength
)

type msFrame struct {
	qname  string // the name as written, to match the end tag
	nsMark int    // len(ns) before this element's declarations
	role   msRole
}

type msBinding struct{ prefix, uri string }

// msReader is the scanner's state.
type msReader struct {
	r       *bufio.Reader
	stack   []msFrame
	ns      []msBinding
	inResp  bool
	resp    davResponse
	text    []byte // text of the open href, status or getcontentlength
	ent     []byte // an entity reference not yet closed by ';'
	inEnt   bool
	name    []byte
	attrs   []msAttr
	stopErr error // fn's error, passed through unchanged
}

type msAttr struct {
	name  string
	value []byte
}

var errStop = errors.New("stop")

func msErr(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errMultistatus}, a...)...)
}

func (m *msReader) run(fn func(*davResponse) error) error {
	for {
		seg, err := m.r.ReadSlice('<')
		found := err == nil
		if found {
			seg = seg[:len(seg)-1]
		}
		if len(seg) > 0 {
			if err := m.chardata(seg); err != nil {
				return err
			}
		}
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err == io.EOF:
			if m.inEnt {
				return msErr("unterminated entity")
			}
			if len(m.stack) > 0 {
				return msErr("unexpected end inside <%.64q>", m.stack[len(m.stack)-1].qname)
			}
			return nil
		case err != nil:
			return err
		}
		if m.inEnt {
			return msErr("unterminated entity")
		}
		if err := m.markup(fn); err != nil {
			return err
		}
	}
}

// markup reads what follows a '<'.
func (m *msReader) markup(fn func(*davResponse) error) error {
	c, err := m.byte()
	if err != nil {
		return err
	}
	switch c {
	case '/':
		return m.endTag(fn)
	case '?':
		return m.instruction()
	case '!':
		return m.bang()
	}
	if err := m.r.UnreadByte(); err != nil {
		return err
	}
	return m.startTag(fn)
}

func (m *msReader) byte() (byte, error) {
	c, err := m.r.ReadByte()
	if err == io.EOF {
		return 0, msErr("unexpected end")
	}
	return c, err
}

// bang reads a comment, a CDATA section, or refuses a DOCTYPE.
func (m *msReader) bang() error {
	c, err := m.byte()
	if err != nil {
		return err
	}
	switch c {
	case '-':
		if c, err = m.byte(); err != nil {
			return err
		}
		if c != '-' {
			return msErr("bad comment")
		}
		return m.comment()
	case '[':
		for _, want := range []byte("CDATA[") {
			if c, err = m.byte(); err != nil {
				return err
			}
			if c != want {
				return msErr("bad CDATA section")
			}
		}
		return m.cdata()
	}
	return msErr("DOCTYPE and other declarations are not allowed")
}

// comment skips a comment's text (after "<!--"): "--" may only come before its closing '>'.
func (m *msReader) comment() error {
	var b0, b1 byte
	for {
		c, err := m.byte()
		if err != nil {
			return err
		}
		if b0 == '-' && b1 == '-' {
			if c != '>' {
				return msErr(`"--" inside a comment`)
			}
			return nil
		}
		b0, b1 = b1, c
	}
}

// instruction skips a processing instruction (after "<?") through "?>".
func (m *msReader) instruction() error {
	var prev byte
	for {
		c, err := m.byte()
		if err != nil {
			return err
		}
		if prev == '?' && c == '>' {
			return nil
		}
		prev = c
	}
}

// cdata reads a CDATA section's text (after "<![CDATA[") through "]]>".
func (m *msReader) cdata() error {
	brackets := 0
	for {
		c, err := m.byte()
		if err != nil {
			return err
		}
		if c == ']' {
			brackets++
			continue
		}
		end := c == '>' && brackets >= 2
		if end {
			brackets -= 2
		}
		for ; brackets > 0; brackets-- {
			m.keep(']')
		}
		if end {
			return nil
		}
		m.keep(c)
	}
}

// collecting says whether text at this point is kept.
func (m *msReader) collecting() bool {
	if len(m.stack) == 0 {
		return false
	}
	switch m.stack[len(m.stack)-1].role {
	case roleHref, roleStatus, roleLength:
		return true
	}
	return false
}

func (m *msReader) keep(c byte) {
	if len(m.text) <= msMaxText && m.collecting() {
		m.text = append(m.text, c)
	}
}

// chardata takes text between markup, resolving entity references (which may be split
// across calls) and keeping it where the listing needs it.
func (m *msReader) chardata(seg []byte) error {
	keep := m.collecting()
	if !keep && !m.inEnt && bytes.IndexByte(seg, '&') < 0 {
		return nil
	}
	for len(seg) > 0 {
		if m.inEnt {
			i := bytes.IndexByte(seg, ';')
			part := seg
			if i >= 0 {
				part = seg[:i]
			}
			if len(m.ent)+len(part) > msMaxEntity {
				return msErr("entity reference too long")
			}
			m.ent = append(m.ent, part...)
			if i < 0 {
				return nil
			}
			seg = seg[i+1:]
			m.inEnt = false
			var buf [utf8.UTFMax]byte
			dec, err := decodeEntity(m.ent, buf[:0])
			if err != nil {
				return err
			}
			m.ent = m.ent[:0]
			if keep && len(m.text) <= msMaxText {
				m.text = append(m.text, dec...)
			}
			continue
		}
		i := bytes.IndexByte(seg, '&')
		plain := seg
		if i >= 0 {
			plain = seg[:i]
		}
		if keep && len(m.text) <= msMaxText {
			m.text = append(m.text, plain[:min(len(plain), msMaxText+1-len(m.text))]...)
		}
		if i < 0 {
			return nil
		}
		m.inEnt = true
		seg = seg[i+1:]
	}
	return nil
}

// decodeEntity appends the text of one entity reference (the name between & and ;).
func decodeEntity(name, dst []byte) ([]byte, error) {
	switch string(name) {
	case "lt":
		return append(dst, '<'), nil
	case "gt":
		return append(dst, '>'), nil
	case "amp":
		return append(dst, '&'), nil
	case "apos":
		return append(dst, '\''), nil
	case "quot":
		return append(dst, '"'), nil
	}
	if len(name) < 2 || name[0] != '#' {
		return nil, msErr("unknown entity &%.32q;", name)
	}
	base, digits := 10, name[1:]
	if digits[0] == 'x' {
		base, digits = 16, digits[1:]
	}
	n, err := strconv.ParseUint(string(digits), base, 32)
	if err != nil || len(digits) == 0 || digits[0] == '+' || digits[0] == '-' || !xmlChar(rune(n)) {
		return nil, msErr("bad character reference &%.32q;", name)
	}
	return utf8.AppendRune(dst, rune(n)), nil
}

// xmlChar is the XML 1.0 Char production.
func xmlChar(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		r >= 0x20 && r <= 0xD7FF || r >= 0xE000 && r <= 0xFFFD || r >= 0x10000 && r <= 0x10FFFF
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// readName reads a name up to (not including) space, '/', '>' or '='.
func (m *msReader) readName() (string, byte, error) {
	m.name = m.name[:0]
	for {
		c, err := m.byte()
		if err != nil {
			return "", 0, err
		}
		if isSpace(c) || c == '/' || c == '>' || c == '=' {
			if len(m.name) == 0 {
				return "", 0, msErr("name expected")
			}
			return string(m.name), c, nil
		}
		if c == '<' || c == '"' || c == '\'' {
			return "", 0, msErr("bad character %q in a name", c)
		}
		if len(m.name) >= msMaxName {
			return "", 0, msErr("name too long")
		}
		m.name = append(m.name, c)
	}
}

func (m *msReader) skipSpace(c byte) (byte, error) {
	var err error
	for isSpace(c) {
		if c, err = m.byte(); err != nil {
			return 0, err
		}
	}
	return c, nil
}

// splitName splits prefix:local the way encoding/xml does.
func splitName(s string) (prefix, local string, err error) {
	if strings.Count(s, ":") > 1 {
		return "", "", msErr("bad name %.64q", s)
	}
	p, l, ok := strings.Cut(s, ":")
	if !ok || p == "" || l == "" {
		return "", s, nil
	}
	return p, l, nil
}

// resolve maps a prefix to its namespace as encoding/xml does: an undeclared prefix stands
// for itself.
func (m *msReader) resolve(prefix string) string {
	switch prefix {
	case "xml":
		return "http://www.w3.org/XML/1998/namespace"
	case "xmlns":
		return prefix
	}
	for i := len(m.ns) - 1; i >= 0; i-- {
		if m.ns[i].prefix == prefix {
			return m.ns[i].uri
		}
	}
	return prefix
}

// startTag reads an element's name and attributes (after '<').
func (m *msReader) startTag(fn func(*davResponse) error) error {
	qname, c, err := m.readName()
	if err != nil {
		return err
	}
	m.attrs = m.attrs[:0]
	selfClosing := false
	for {
		if c, err = m.skipSpace(c); err != nil {
			return err
		}
		if c == '>' {
			break
		}
		if c == '/' {
			if c, err = m.byte(); err != nil {
				return err
			}
			if c != '>' {
				return msErr("expected /> in <%.64q>", qname)
			}
			selfClosing = true
			break
		}
		if err := m.r.UnreadByte(); err != nil {
			return err
		}
		if len(m.attrs) >= msMaxAttrs {
			return msErr("too many attributes in <%.64q>", qname)
		}
		a, err := m.attribute()
		if err != nil {
			return err
		}
		m.attrs = append(m.attrs, a)
		if c, err = m.byte(); err != nil {
			return err
		}
	}
	if len(m.stack) >= msMaxDepth {
		return msErr("nested too deep")
	}
	frame := msFrame{qname: qname, nsMark: len(m.ns)}
	for _, a := range m.attrs {
		switch {
		case a.name == "xmlns":
			m.ns = append(m.ns, msBinding{"", string(a.value)})
		case strings.HasPrefix(a.name, "xmlns:"):
			m.ns = append(m.ns, msBinding{a.name[len("xmlns:"):], string(a.value)})
		}
	}
	prefix, local, err := splitName(qname)
	if err != nil {
		return err
	}
	frame.role = m.role(m.resolve(prefix) == "DAV:", local)
	m.stack = append(m.stack, frame)
	switch frame.role {
	case roleResponse:
		m.inResp = true
		m.resp.Href = ""
		m.resp.Propstat = m.resp.Propstat[:0]
	case rolePropstat:
		if len(m.resp.Propstat) >= msMaxPropstat {
			return msErr("more than %d propstats in one response", msMaxPropstat)
		}
		m.resp.Propstat = append(m.resp.Propstat, davPropstat{})
	case roleResourcetype:
	case roleHref, roleStatus, roleLength:
		m.text = m.text[:0]
	}
	if selfClosing {
		return m.end(fn)
	}
	return nil
}

// role is what a DAV: element named local means under the open element.
func (m *msReader) role(dav bool, local string) msRole {
	if !dav {
		return roleNone
	}
	if !m.inResp {
		if local == "response" {
			return roleResponse
		}
		return roleNone
	}
	parent := m.stack[len(m.stack)-1].role
	switch {
	case parent == roleResponse && local == "href":
		return roleHref
	case parent == roleResponse && local == "propstat":
		return rolePropstat
	case parent == rolePropstat && local == "status":
		return roleStatus
	case parent == rolePropstat && local == "prop":
		return roleProp
	case parent == roleProp && local == "resourcetype":
		return roleResourcetype
	case parent == roleProp && local == "getcontentlength":
		return roleLength
	case parent == roleResourcetype && local == "collection":
		m.resp.Propstat[len(m.resp.Propstat)-1].Collection = true
	}
	return roleNone
}

// attribute reads name="value" (or 'value'); the value's entities are resolved.
func (m *msReader) attribute() (msAttr, error) {
	name, c, err := m.readName()
	if err != nil {
		return msAttr{}, err
	}
	if _, _, err := splitName(name); err != nil {
		return msAttr{}, err
	}
	if c, err = m.skipSpace(c); err != nil {
		return msAttr{}, err
	}
	if c != '=' {
		return msAttr{}, msErr("attribute %.64q has no value", name)
	}
	if c, err = m.byte(); err != nil {
		return msAttr{}, err
	}
	if c, err = m.skipSpace(c); err != nil {
		return msAttr{}, err
	}
	if c != '"' && c != '\'' {
		return msAttr{}, msErr("attribute %.64q: value not quoted", name)
	}
	quote := c
	var val []byte
	for {
		c, err := m.byte()
		if err != nil {
			return msAttr{}, err
		}
		switch c {
		case quote:
			return msAttr{name: name, value: val}, nil
		case '<':
			return msAttr{}, msErr("attribute %.64q: unescaped <", name)
		case '&':
			var ent []byte
			for {
				if c, err = m.byte(); err != nil {
					return msAttr{}, err
				}
				if c == ';' {
					break
				}
				if len(ent) >= msMaxEntity {
					return msAttr{}, msErr("entity reference too long")
				}
				ent = append(ent, c)
			}
			if val, err = decodeEntity(ent, val); err != nil {
				return msAttr{}, err
			}
		default:
			val = append(val, c)
		}
		if len(val) > msMaxAttr {
			return msAttr{}, msErr("attribute %.64q too long", name)
		}
	}
}

// endTag reads "name>" after "</" and closes the open element.
func (m *msReader) endTag(fn func(*davResponse) error) error {
	qname, c, err := m.readName()
	if err != nil {
		return err
	}
	if c, err = m.skipSpace(c); err != nil {
		return err
	}
	if c != '>' {
		return msErr("bad end tag </%.64q", qname)
	}
	if len(m.stack) == 0 || m.stack[len(m.stack)-1].qname != qname {
		return msErr("unexpected </%.64q>", qname)
	}
	return m.end(fn)
}

// end closes the innermost element.
func (m *msReader) end(fn func(*davResponse) error) error {
	f := m.stack[len(m.stack)-1]
	m.stack = m.stack[:len(m.stack)-1]
	m.ns = m.ns[:f.nsMark]
	switch f.role {
	case roleHref:
		m.resp.Href = string(m.text)
	case roleStatus:
		m.resp.Propstat[len(m.resp.Propstat)-1].Status = string(m.text)
	case roleLength:
		m.resp.Propstat[len(m.resp.Propstat)-1].Length = string(m.text)
	case roleResponse:
		m.inResp = false
		if err := fn(&m.resp); err != nil {
			m.stopErr = err
			return errStop
		}
	}
	return nil
}
