package volid

import (
	"errors"
	"strings"
	"testing"
)

func TestSplit(t *testing.T) {
	tests := []struct {
		id       string
		instance string
		native   string
		err      error
	}{
		{"local/0123abcd", "local", "0123abcd", nil},
		{"ebs-east/vol-0abc", "ebs-east", "vol-0abc", nil},
		{"nfs/server/export/dir", "nfs", "server/export/dir", nil},
		{"", "", "", ErrMalformed},
		{"local/a\x00b", "", "", ErrMalformed},
		{"local/\n", "", "", ErrMalformed},
		{"local/" + strings.Repeat("a", MaxLen), "", "", ErrMalformed},
		{"local/\xff", "", "", ErrMalformed},
		{"some-vol-id", "", "", ErrForeign},
		{"/abs", "", "", ErrForeign},
		{"../x", "", "", ErrForeign},
		{"local/", "", "", ErrForeign},
		{"-bad/x", "", "", ErrForeign},
	}
	for _, tt := range tests {
		inst, nat, err := Split(tt.id)
		if !errors.Is(err, tt.err) || (tt.err == nil && err != nil) {
			t.Errorf("Split(%q) err = %v, want %v", tt.id, err, tt.err)
			continue
		}
		if inst != tt.instance || nat != tt.native {
			t.Errorf("Split(%q) = %q, %q; want %q, %q", tt.id, inst, nat, tt.instance, tt.native)
		}
	}
}

func TestJoinSplitRoundTrip(t *testing.T) {
	id := Join("local", "abc")
	i, n, err := Split(id)
	if err != nil || i != "local" || n != "abc" {
		t.Fatalf("round trip of %q = %q, %q, %v", id, i, n, err)
	}
}

func FuzzSplit(f *testing.F) {
	for _, s := range []string{"local/abc", "", "a/../../etc", "x\x00/y", "local/" + strings.Repeat("z", 200)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		inst, nat, err := Split(id)
		if err != nil {
			return
		}
		if Join(inst, nat) != id {
			t.Fatalf("Join(Split(%q)) = %q", id, Join(inst, nat))
		}
		if !ValidInstance(inst) || strings.ContainsAny(id, "\x00") || len(id) > MaxLen {
			t.Fatalf("Split accepted %q", id)
		}
	})
}
