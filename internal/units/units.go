// Package units parses and prints byte sizes the way operators write them,
// for the plugin's configuration and parameters and for csictl alike: one
// parser, so the two never disagree about what "1.5GiB" means.
//
// The units follow Kubernetes resource quantities: binary suffixes (Ki, Mi,
// Gi, Ti, Pi, or the same with a trailing B) are powers of 1024; decimal
// ones (k or K, M, G, T, P, or the same with a trailing B) are powers of
// 1000. So 1Gi = 1GiB = 1073741824 bytes, but 1G = 1GB = 1000000000.
package units

import (
	"fmt"
	"math/big"
	"strconv"
	"strings"
)

const (
	KiB int64 = 1 << 10
	MiB int64 = 1 << 20
	GiB int64 = 1 << 30
	TiB int64 = 1 << 40
	PiB int64 = 1 << 50
)

// multipliers maps each accepted suffix to its value. Suffixes are
// case-sensitive (apart from the kilo K) so that "m", which Kubernetes
// reads as milli, is refused rather than taken for mega.
var multipliers = map[string]int64{
	"": 1, "B": 1,
	"Ki": KiB, "Mi": MiB, "Gi": GiB, "Ti": TiB, "Pi": PiB,
	"KiB": KiB, "MiB": MiB, "GiB": GiB, "TiB": TiB, "PiB": PiB,
	"k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
	"kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "PB": 1e15,
}

// Help describes the accepted forms; error messages and csictl's help
// quote it.
const Help = "Sizes are a number with an optional unit, as in Kubernetes: B or none for\n" +
	"bytes; Ki, Mi, Gi, Ti (or KiB, MiB, GiB, TiB) for powers of 1024; k, M, G, T\n" +
	"(or kB, MB, GB, TB) for powers of 1000. So 1Gi = 1GiB = 1073741824 bytes but\n" +
	"1G = 1GB = 1000000000. Decimals are allowed when the result is a whole number\n" +
	"of bytes (1.5GiB)."

const accepted = "accepted forms: 4096, 512Mi, 512MiB, 1.5GiB, 10G, 10GB"

// ParseSize reads a size: a non-negative number, decimals allowed, with an
// optional unit; the result must be a whole number of bytes.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.TrimSpace(t[i:])
	if num == "" || strings.Count(num, ".") > 1 || num[0] == '.' || num[len(num)-1] == '.' {
		return 0, fmt.Errorf("size %q: want a number with an optional unit (%s)", s, accepted)
	}
	mult, ok := multipliers[unit]
	if !ok {
		return 0, fmt.Errorf("size %q: unknown unit %q (%s)", s, unit, accepted)
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, fmt.Errorf("size %q: want a number with an optional unit (%s)", s, accepted)
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	if !r.IsInt() {
		return 0, fmt.Errorf("size %q is not a whole number of bytes", s)
	}
	if !r.Num().IsInt64() {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return r.Num().Int64(), nil
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

var binary = []struct {
	s string
	n int64
}{{"PiB", PiB}, {"TiB", TiB}, {"GiB", GiB}, {"MiB", MiB}, {"KiB", KiB}}

// Format prints n exactly, with the largest binary unit that divides it:
// what ParseSize reads back to the same number.
func Format(n int64) string {
	for _, u := range binary {
		if n >= u.n && n%u.n == 0 {
			return strconv.FormatInt(n/u.n, 10) + u.s
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

// Human prints n for people, in the largest binary unit not above it,
// with up to two decimals: 1610612736 is "1.5GiB", 1000 is "1000B".
func Human(n int64) string {
	for _, u := range binary {
		if n >= u.n {
			if n%u.n == 0 {
				return strconv.FormatInt(n/u.n, 10) + u.s
			}
			s := strconv.FormatFloat(float64(n)/float64(u.n), 'f', 2, 64)
			return strings.TrimRight(strings.TrimRight(s, "0"), ".") + u.s
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}
