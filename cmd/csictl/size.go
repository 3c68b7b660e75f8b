package main

import (
	"fmt"
	"math/big"
	"strings"
)

// sizeUnits maps each accepted suffix to its multiplier. IEC suffixes
// (KiB, MiB, GiB, TiB) are powers of 1024; SI suffixes (K, M, G, T, and
// the same with a trailing B) are powers of 1000. No suffix, or B, means
// bytes. Suffixes are case-sensitive so that "m" is never mistaken for "M".
var sizeUnits = map[string]int64{
	"": 1, "B": 1,
	"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
	"K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
	"KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
}

const sizeHelp = "Sizes are a number with an optional unit: B (bytes, also the default);\n" +
	"KiB, MiB, GiB, TiB (powers of 1024); K, M, G, T or KB, MB, GB, TB (powers of\n" +
	"1000). So 1GiB = 1073741824 bytes but 1G = 1000000000. Decimals are allowed\n" +
	"when the result is a whole number of bytes (1.5GiB)."

// parseSize parses a byte size such as "1GiB", "512MiB", "10G" or "4096".
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		i++
	}
	num, unit := s[:i], strings.TrimSpace(s[i:])
	if num == "" || strings.Count(num, ".") > 1 || num[0] == '.' || num[len(num)-1] == '.' {
		return 0, fmt.Errorf("invalid size %q: want a number with an optional unit, e.g. 1GiB", s)
	}
	mult, ok := sizeUnits[unit]
	if !ok {
		return 0, fmt.Errorf("invalid size %q: unknown unit %q (use B, KiB, MiB, GiB, TiB, K, M, G, T)", s, unit)
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	if !r.IsInt() {
		return 0, fmt.Errorf("invalid size %q: not a whole number of bytes", s)
	}
	n := r.Num()
	if !n.IsInt64() {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	return n.Int64(), nil
}

// formatSize renders a byte count for people, in IEC units: 1073741824
// is "1GiB", 1610612736 is "1.5GiB", 1000 is "1000B".
func formatSize(n int64) string {
	units := []struct {
		name string
		mult int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}}
	for _, u := range units {
		if n >= u.mult {
			if n%u.mult == 0 {
				return fmt.Sprintf("%d%s", n/u.mult, u.name)
			}
			s := fmt.Sprintf("%.2f", float64(n)/float64(u.mult))
			s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
			return s + u.name
		}
	}
	return fmt.Sprintf("%dB", n)
}
