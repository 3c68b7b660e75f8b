// Package units parses and prints byte sizes the way operators write them
// in configuration: 512MiB, 10GiB, 100G.
package units

import (
	"fmt"
	"strconv"
	"strings"
)

const (
	KiB int64 = 1 << 10
	MiB int64 = 1 << 20
	GiB int64 = 1 << 30
	TiB int64 = 1 << 40
)

var suffixes = []struct {
	s string
	n int64
}{
	{"KiB", KiB}, {"MiB", MiB}, {"GiB", GiB}, {"TiB", TiB},
	{"Ki", KiB}, {"Mi", MiB}, {"Gi", GiB}, {"Ti", TiB},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12},
	{"B", 1},
}

// ParseSize reads a size: a whole number with an optional unit. Binary
// units (KiB, Mi, …) are powers of 1024; decimal ones (K, MB, …) powers of
// 1000; no unit means bytes.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range suffixes {
		if strings.HasSuffix(t, u.s) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.s)), u.n
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("size %q: want a whole number of bytes with an optional unit such as MiB or GiB", s)
	}
	if n > 0 && mult > (1<<63-1)/n {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return n * mult, nil
}

// RoundUp rounds n up to a multiple of step, reporting false on overflow.
func RoundUp(n, step int64) (int64, bool) {
	if n <= 0 {
		return 0, true
	}
	r := (n + step - 1) / step * step
	if r < n {
		return 0, false
	}
	return r, true
}

// Format prints n with the largest binary unit that divides it.
func Format(n int64) string {
	for _, u := range []struct {
		s string
		n int64
	}{{"TiB", TiB}, {"GiB", GiB}, {"MiB", MiB}, {"KiB", KiB}} {
		if n >= u.n && n%u.n == 0 {
			return strconv.FormatInt(n/u.n, 10) + u.s
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}
