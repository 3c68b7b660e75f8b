package params

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	tests := []struct {
		name  string
		in    map[string]string
		allow bool
		err   string
	}{
		{"empty", nil, false, ""},
		{"common keys", map[string]string{"backend": "a", "fsType": "xfs", "size": "10"}, false, ""},
		{"backend key", map[string]string{"preallocate": "true"}, false, ""},
		{"kubernetes keys dropped", map[string]string{"csi.storage.k8s.io/pvc/name": "x"}, false, ""},
		{"unknown key named", map[string]string{"sise": "1"}, false, `"sise"`},
		{"bad fs", map[string]string{"fsType": "zfs"}, false, "zfs"},
		{"bad size", map[string]string{"size": "-3"}, false, "size"},
		{"fractional size", map[string]string{"size": "1.5"}, false, "size"},
		{"overwrite refused", map[string]string{"overwritefs": "true"}, false, "allowOverwrite"},
		{"overwrite allowed", map[string]string{"overwritefs": "true"}, true, ""},
		{"overwrite false is fine", map[string]string{"overwritefs": "false"}, false, ""},
		{"fs names disagree", map[string]string{"fsType": "ext4", "newfstype": "xfs"}, false, "disagree"},
		{"NUL in value", map[string]string{"preallocate": "a\x00b"}, false, "valid text"},
		{"huge value", map[string]string{"preallocate": strings.Repeat("x", 2000)}, false, "1024"},
	}
	for _, tt := range tests {
		out, err := Check(tt.in, []string{"preallocate"}, tt.allow)
		if tt.err == "" {
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
			}
			for k := range out {
				if strings.HasPrefix(k, KubernetesPrefix) {
					t.Errorf("%s: kept %q", tt.name, k)
				}
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%s: err = %v, want it to mention %q", tt.name, err, tt.err)
		}
	}
}

func FuzzCheck(f *testing.F) {
	f.Add("fsType", "xfs", "size", "3")
	f.Add("overwritefs", "true", "backend", "x")
	f.Add("../k", "v\x00", "csi.storage.k8s.io/x", "")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		out, err := Check(map[string]string{k1: v1, k2: v2}, []string{"preallocate"}, false)
		if err != nil {
			return
		}
		for k, v := range out {
			if strings.ContainsRune(v, 0) || len(v) > 1024 {
				t.Fatalf("accepted %q=%q", k, v)
			}
			if k == OverwriteFSKey && Overwrite(out) {
				t.Fatal("overwritefs=true accepted without the operator switch")
			}
		}
	})
}
