package webdavsrv

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"os"

	"golang.org/x/net/webdav"
	"golang.org/x/sys/unix"
)

// Extended attributes hold what the server keeps beside a file: they travel with rename (MOVE),
// are invisible to clients and leave no sidecar files to hide or to orphan.
const (
	xattrProps  = "user.drepo.props"
	xattrDigest = "user.drepo.sha256"
	// maxProps bounds the dead properties of one resource (ext4 keeps xattrs in one block).
	maxProps = 3 << 10
)

type xmlName = xml.Name

// storedProp is one dead property as kept in the xattr.
type storedProp struct {
	Space string `json:"s"`
	Local string `json:"l"`
	Lang  string `json:"g,omitempty"`
	Inner []byte `json:"x"`
}

func getXattr(f *os.File, name string) ([]byte, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Fgetxattr(int(f.Fd()), name, buf)
		switch {
		case errors.Is(err, unix.ERANGE) && len(buf) < 64<<10:
			buf = make([]byte, 64<<10)
			continue
		case errors.Is(err, unix.ENODATA):
			return nil, nil
		case err != nil:
			return nil, err
		}
		return buf[:n], nil
	}
}

func readProps(f *os.File) (map[xmlName]webdav.Property, error) {
	b, err := getXattr(f, xattrProps)
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			return map[xmlName]webdav.Property{}, nil
		}
		return nil, fmt.Errorf("webdavsrv: read properties: %w", err)
	}
	m := map[xmlName]webdav.Property{}
	if len(b) == 0 {
		return m, nil
	}
	var list []storedProp
	if err := json.Unmarshal(b, &list); err != nil {
		return m, nil // unreadable properties are dropped, the file itself is fine
	}
	for _, p := range list {
		n := xml.Name{Space: p.Space, Local: p.Local}
		m[n] = webdav.Property{XMLName: n, Lang: p.Lang, InnerXML: p.Inner}
	}
	return m, nil
}

// patchProps applies all patches or none (RFC 4918 PROPPATCH is atomic).
func patchProps(f *os.File, patches []webdav.Proppatch) ([]webdav.Propstat, error) {
	m, err := readProps(f)
	if err != nil {
		return nil, err
	}
	ok := webdav.Propstat{Status: http.StatusOK}
	for _, patch := range patches {
		for _, p := range patch.Props {
			ok.Props = append(ok.Props, webdav.Property{XMLName: p.XMLName})
			if patch.Remove {
				delete(m, p.XMLName)
			} else {
				m[p.XMLName] = p
			}
		}
	}
	list := make([]storedProp, 0, len(m))
	for n, p := range m {
		list = append(list, storedProp{Space: n.Space, Local: n.Local, Lang: p.Lang, Inner: p.InnerXML})
	}
	b, _ := json.Marshal(list)
	failed := func(status int) []webdav.Propstat {
		return []webdav.Propstat{{Status: status, Props: ok.Props}}
	}
	if len(b) > maxProps {
		return failed(http.StatusInsufficientStorage), nil
	}
	if len(list) == 0 {
		err = unix.Fremovexattr(int(f.Fd()), xattrProps)
		if errors.Is(err, unix.ENODATA) {
			err = nil
		}
	} else {
		err = unix.Fsetxattr(int(f.Fd()), xattrProps, b, 0)
	}
	switch {
	case errors.Is(err, unix.ENOTSUP):
		return failed(http.StatusForbidden), nil
	case errors.Is(err, unix.ENOSPC), errors.Is(err, unix.E2BIG):
		return failed(http.StatusInsufficientStorage), nil
	case err != nil:
		return nil, fmt.Errorf("webdavsrv: write properties: %w", err)
	}
	return []webdav.Propstat{ok}, nil
}

func setXattr(f *os.File, name string, value []byte) error {
	return unix.Fsetxattr(int(f.Fd()), name, value, 0)
}
