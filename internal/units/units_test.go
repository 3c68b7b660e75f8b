package units

import "testing"

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"512", 512, true},
		{"1GiB", GiB, true},
		{"10Gi", 10 * GiB, true},
		{"512MiB", 512 * MiB, true},
		{"1G", 1e9, true},
		{"2 TiB", 2 * TiB, true},
		{"-1GiB", 0, false},
		{"1.5GiB", 0, false},
		{"GiB", 0, false},
		{"9999999999TiB", 0, false},
		{"12XB", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestRoundUpAndFormat(t *testing.T) {
	if r, ok := RoundUp(MiB+1, MiB); !ok || r != 2*MiB {
		t.Fatalf("RoundUp(MiB+1) = %d, %v", r, ok)
	}
	if _, ok := RoundUp(1<<63-1, MiB); ok {
		t.Fatal("RoundUp did not report overflow")
	}
	if s := Format(3 * GiB); s != "3GiB" {
		t.Fatalf("Format = %q", s)
	}
	if s := Format(1000); s != "1000B" {
		t.Fatalf("Format = %q", s)
	}
}
