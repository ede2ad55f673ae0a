package webdavsrv

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
)

// Bounds on request XML (PROPFIND, PROPPATCH, LOCK bodies).
const (
	maxXMLBody   = 1 << 20
	maxXMLDepth  = 64
	maxXMLTokens = 100000
	// maxXMLProps bounds the properties one request names (children of <prop>): asking for
	// 49,000 properties made an 81 MB answer.
	maxXMLProps = 64
)

// checkXML verifies that body is one well-formed XML document whose namespace prefixes are
// all declared and never undeclared (xmlns:p="" is not allowed in XML 1.0 namespaces), within
// depth and size bounds. x/net/webdav accepts some of these, so the server checks first and
// answers 400.
func checkXML(body []byte) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil // an empty PROPFIND body means allprop
	}
	d := xml.NewDecoder(bytes.NewReader(body))
	type frame struct {
		name     xml.Name
		prefixes map[string]bool
	}
	stack := []frame{{prefixes: map[string]bool{"xml": true}}}
	declared := func(p string) bool {
		for i := len(stack) - 1; i >= 0; i-- {
			if v, ok := stack[i].prefixes[p]; ok {
				return v
			}
		}
		return false
	}
	roots, props := 0, 0
	for n := 0; ; n++ {
		if n > maxXMLTokens {
			return errors.New("too many XML tokens")
		}
		tok, err := d.RawToken()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if len(stack) == 1 {
				roots++
				if roots > 1 {
					return errors.New("more than one root element")
				}
			}
			if len(stack) > maxXMLDepth {
				return errors.New("XML nested too deep")
			}
			if len(stack) > 1 && stack[len(stack)-1].name.Local == "prop" {
				if props++; props > maxXMLProps {
					return fmt.Errorf("more than %d properties asked for", maxXMLProps)
				}
			}
			f := frame{name: t.Name, prefixes: map[string]bool{}}
			for _, a := range t.Attr {
				switch {
				case a.Name.Space == "xmlns":
					if a.Value == "" {
						return fmt.Errorf("namespace prefix %q declared empty", a.Name.Local)
					}
					f.prefixes[a.Name.Local] = true
				case a.Name.Space == "" && a.Name.Local == "xmlns":
				}
			}
			stack = append(stack, f)
			if t.Name.Space != "" && !declared(t.Name.Space) {
				return fmt.Errorf("undeclared namespace prefix %q", t.Name.Space)
			}
			for _, a := range t.Attr {
				if a.Name.Space != "" && a.Name.Space != "xmlns" && !declared(a.Name.Space) {
					return fmt.Errorf("undeclared namespace prefix %q", a.Name.Space)
				}
			}
		case xml.EndElement:
			if len(stack) == 1 || stack[len(stack)-1].name != t.Name {
				return fmt.Errorf("unexpected end element %s", t.Name.Local)
			}
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) == 1 && len(bytes.TrimSpace(t)) > 0 {
				return errors.New("text outside the root element")
			}
		}
	}
	if len(stack) != 1 || roots != 1 {
		return errors.New("incomplete XML document")
	}
	return nil
}
