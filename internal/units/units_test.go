package units

import (
	"strings"
	"testing"
)

// Sizes is the one table of what a person may type for a size; the plugin's
// configuration and parameters and csictl's flags all go through ParseSize,
// and cmd/csictl's flag test runs a sample of these rows through the flag.
func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  string // substring of the error; empty for success
	}{
		{"0", 0, ""},
		{"4096", 4096, ""},
		{"512B", 512, ""},
		{"1GiB", GiB, ""},
		{"1Gi", GiB, ""},
		{"1.5GiB", 3 * GiB / 2, ""},
		{"1.5Gi", 3 * GiB / 2, ""},
		{"512Mi", 512 * MiB, ""},
		{"512MiB", 512 * MiB, ""},
		{"10G", 10e9, ""},
		{"10GB", 10e9, ""},
		{"1k", 1000, ""},
		{"1K", 1000, ""},
		{"2Ti", 2 * TiB, ""},
		{" 2 GiB ", 2 * GiB, ""},
		{"1PiB", PiB, ""},
		{"9223372036854775807", 1<<63 - 1, ""},
		{"", 0, "want a number"},
		{"GiB", 0, "want a number"},
		{"-1GiB", 0, "want a number"},
		{"1.2.3G", 0, "want a number"},
		{".5G", 0, "want a number"},
		{"5.G", 0, "want a number"},
		{"1e3", 0, `unknown unit "e3"`},
		{"1g", 0, `unknown unit "g"`},
		{"1gib", 0, "unknown unit"},
		{"1m", 0, "unknown unit"},
		{"12XB", 0, "unknown unit"},
		{"1.5B", 0, "not a whole number of bytes"},
		{"0.0001K", 0, "not a whole number"},
		{"9999999TiB", 0, "too large"},
		{"9223372036854775808", 0, "too large"},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		switch {
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("ParseSize(%q) = %d, %v; want error containing %q", tt.in, got, err, tt.err)
		case tt.err != "" && !strings.Contains(err.Error(), "1.5GiB") && !strings.Contains(err.Error(), "whole number") && !strings.Contains(err.Error(), "too large"):
			t.Errorf("ParseSize(%q): error %q does not show the accepted forms", tt.in, err)
		}
	}
}

func TestFormatRoundTrips(t *testing.T) {
	for _, n := range []int64{0, 1, 1000, KiB, 3 * GiB, 3*GiB + 1, 5 * PiB, 1<<63 - 1} {
		back, err := ParseSize(Format(n))
		if err != nil || back != n {
			t.Errorf("ParseSize(Format(%d) = %q) = %d, %v", n, Format(n), back, err)
		}
	}
}

func TestHuman(t *testing.T) {
	for n, want := range map[int64]string{
		0: "0B", 1000: "1000B", 1024: "1KiB", 1536: "1.5KiB", GiB: "1GiB",
		3 * GiB / 2: "1.5GiB", 10 * TiB: "10TiB", 1e9: "953.67MiB",
	} {
		if got := Human(n); got != want {
			t.Errorf("Human(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestRoundUp(t *testing.T) {
	if r, ok := RoundUp(MiB+1, MiB); !ok || r != 2*MiB {
		t.Fatalf("RoundUp(MiB+1) = %d, %v", r, ok)
	}
	if _, ok := RoundUp(1<<63-1, MiB); ok {
		t.Fatal("RoundUp did not report overflow")
	}
}
