package manifests

import "strings"

// CompareVersions orders versions as people read them: runs of digits compare as numbers,
// other runs as text ("12.10" > "12.9", "1.0-rc1" < "1.0-rc2").
func CompareVersions(a, b string) int {
	for a != "" && b != "" {
		ra, ta := versionRun(a)
		rb, tb := versionRun(b)
		da, db := isDigits(ra), isDigits(rb)
		var c int
		switch {
		case da && db:
			na, nb := strings.TrimLeft(ra, "0"), strings.TrimLeft(rb, "0")
			if c = len(na) - len(nb); c == 0 {
				c = strings.Compare(na, nb)
			}
		case da:
			c = 1 // a number sorts after text at the same place ("1.0.1" > "1.0-rc")
		case db:
			c = -1
		default:
			c = strings.Compare(ra, rb)
		}
		if c != 0 {
			if c < 0 {
				return -1
			}
			return 1
		}
		a, b = ta, tb
	}
	// One ran out. A remainder starting with "-" or "~" is a pre-release of the shorter
	// ("1.0-rc1" < "1.0"); any other remainder makes the longer one newer ("1.0.1" > "1.0").
	switch {
	case a == b:
		return 0
	case a == "":
		if b[0] == '-' || b[0] == '~' {
			return 1
		}
		return -1
	default:
		if a[0] == '-' || a[0] == '~' {
			return -1
		}
		return 1
	}
}

func versionRun(s string) (run, rest string) {
	d := s[0] >= '0' && s[0] <= '9'
	i := 1
	for i < len(s) && (s[i] >= '0' && s[i] <= '9') == d {
		i++
	}
	return s[:i], s[i:]
}

func isDigits(s string) bool { return s != "" && s[0] >= '0' && s[0] <= '9' }
