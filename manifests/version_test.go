package manifests

import "testing"

func TestCompareVersions(t *testing.T) {
	ordered := []string{"1.0-rc1", "1.0-rc2", "1.0", "1.0.1", "1.2", "1.10", "2", "12.7.4", "12.10.0"}
	for i := range ordered {
		for j := range ordered {
			got := CompareVersions(ordered[i], ordered[j])
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got != want {
				t.Errorf("CompareVersions(%q, %q) = %d, want %d", ordered[i], ordered[j], got, want)
			}
		}
	}
}
