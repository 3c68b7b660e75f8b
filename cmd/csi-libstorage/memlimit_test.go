package main

import (
	"math"
	"runtime/debug"
	"testing"
)

func TestMemoryLimit(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	noEnv := func(string) string { return "" }
	for _, tc := range []struct {
		name    string
		flag    string
		getenv  func(string) string
		want    int64 // the limit reported and in force afterwards
		wantErr bool
	}{
		{"default", "28MiB", noEnv, 28 << 20, false},
		{"off", "0", noEnv, 0, false},
		{"not a size", "lots", noEnv, 0, true},
		{"GOMEMLIMIT wins", "28MiB", func(k string) string {
			if k == "GOMEMLIMIT" {
				return "64MiB"
			}
			return ""
		}, 64 << 20, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// As the runtime would have applied $GOMEMLIMIT at start.
			debug.SetMemoryLimit(64 << 20)
			if tc.flag == "0" {
				debug.SetMemoryLimit(math.MaxInt64)
			}
			got, err := memoryLimit(tc.flag, tc.getenv)
			if (err != nil) != tc.wantErr {
				t.Fatalf("memoryLimit(%q) error %v, want error %t", tc.flag, err, tc.wantErr)
			}
			if err != nil {
				return
			}
			inForce := debug.SetMemoryLimit(-1)
			if tc.want == 0 {
				if got != 0 || inForce != math.MaxInt64 {
					t.Fatalf("memoryLimit(%q) = %d with %d in force; want none", tc.flag, got, inForce)
				}
				return
			}
			if got != tc.want || inForce != tc.want {
				t.Fatalf("memoryLimit(%q) = %d with %d in force; want %d", tc.flag, got, inForce, tc.want)
			}
		})
	}
}
