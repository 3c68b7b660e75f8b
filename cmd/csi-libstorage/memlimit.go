package main

import (
	"fmt"
	"runtime/debug"

	"github.com/csi-libstorage/csi-libstorage/internal/units"
)

// memoryLimit applies --memory-limit and returns the limit in force, in
// bytes (0 for none). $GOMEMLIMIT, read by the Go runtime at start, wins:
// an operator who set it meant it.
func memoryLimit(flagValue string, getenv func(string) string) (int64, error) {
	if getenv("GOMEMLIMIT") != "" {
		return debug.SetMemoryLimit(-1), nil
	}
	n, err := units.ParseSize(flagValue)
	if err != nil {
		return 0, fmt.Errorf("--memory-limit %q: %w", flagValue, err)
	}
	if n == 0 {
		return 0, nil
	}
	debug.SetMemoryLimit(n)
	return n, nil
}
