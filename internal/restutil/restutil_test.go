package restutil

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestReadPassword(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pw")
	if err := os.WriteFile(file, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("RESTUTIL_PW", "from-env")
	tests := []struct {
		file, env string
		want      string
		wantErr   string
	}{
		{file, "", "from-file", ""},
		{"", "RESTUTIL_PW", "from-env", ""},
		{"", "", "", "passwordFile or passwordEnv is required"},
		{file, "RESTUTIL_PW", "", "not both"},
		{empty, "", "", "is empty"},
		{filepath.Join(dir, "missing"), "", "", "no such file"},
		{"", "RESTUTIL_UNSET_VARIABLE", "", "is not set"},
	}
	for _, tt := range tests {
		got, err := ReadPassword(tt.file, tt.env)
		if got != tt.want || (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("ReadPassword(%q, %q) = %q, %v; want %q, %q", tt.file, tt.env, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestParseDurations(t *testing.T) {
	var a, b time.Duration
	if err := ParseDurations(Duration{"a", "", time.Second, &a}, Duration{"b", "250ms", time.Second, &b}); err != nil || a != time.Second || b != 250*time.Millisecond {
		t.Fatalf("got %v %v %v", a, b, err)
	}
	for _, bad := range []string{"0s", "-1s", "ten"} {
		if err := ParseDurations(Duration{"x", bad, time.Second, &a}); err == nil || !strings.Contains(err.Error(), "x ") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestHTTPClientCA(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(bad, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := HTTPClient(bad, false, time.Second); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("bad CA: %v", err)
	}
	c, err := HTTPClient("", false, 3*time.Second)
	if err != nil || c.Timeout != 3*time.Second {
		t.Fatalf("client: %+v, %v", c, err)
	}
}
