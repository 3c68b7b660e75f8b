package scaleio

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/csi-libstorage/csi-libstorage/backends"
)

// Kinds of named objects.
const (
	kindMount    = 'm'
	kindBlock    = 'b'
	kindSnapshot = 's'
)

// fsCodes are the one-character codes of filesystems in names; '0' is none.
var fsCodes = map[string]byte{"": '0', "ext4": '4', "xfs": 'x', "btrfs": 't', "ext3": '3', "ext2": '2', backends.FormattedRaw: 'r'}

func fsOf(c byte) (string, bool) {
	for k, v := range fsCodes {
		if v == c {
			return k, true
		}
	}
	return "", false
}

// meta is what a volume's name records.
type meta struct {
	key    string // <stem>-<hash>: stable for one CSI name
	kind   byte
	modes  []backends.AccessMode
	fsType string // requested
	mark   string // formatted mark
	// byNode: the node service mapped the volume itself (no
	// ControllerPublish came first) and unmaps it on unstage.
	byNode bool
}

// stemLen leaves room for "-" + 12 hex + "_" + 6 meta characters in 31.
const stemLen = MaxNameLen - 1 - 12 - 1 - 6

// nameKey derives the stable, collision-safe part of a volume's name from
// its CSI name: a readable stem (ScaleIO names take letters, digits, '-',
// '.' and '_'; the rest become '-') and a hash of the whole name.
func nameKey(csiName string) string {
	sum := sha256.Sum256([]byte(csiName))
	var stem strings.Builder
	for _, r := range csiName {
		if stem.Len() == stemLen {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.':
			stem.WriteRune(r)
		default:
			stem.WriteByte('-')
		}
	}
	return stem.String() + "-" + hex.EncodeToString(sum[:6])
}

func (m meta) name() string {
	var bits int
	for _, mode := range m.modes {
		if mode > backends.AccessUnknown && mode <= backends.SingleNodeMultiWriter {
			bits |= 1 << (int(mode) - 1)
		}
	}
	by := 'c'
	if m.byNode {
		by = 'n'
	}
	return fmt.Sprintf("%s_%c%02x%c%c%c", m.key, m.kind, bits, fsCodes[m.fsType], fsCodes[m.mark], by)
}

// parseName reads a name this backend gave; ok is false for any other
// volume on the storage, which the backend then leaves alone.
func parseName(n string) (meta, bool) {
	key, tail, ok := strings.Cut(n, "_")
	if !ok || len(tail) != 6 || (tail[5] != 'c' && tail[5] != 'n') || len(key) < 14 || key[len(key)-13] != '-' {
		return meta{}, false
	}
	m := meta{key: key, kind: tail[0], byNode: tail[5] == 'n'}
	if m.kind != kindMount && m.kind != kindBlock && m.kind != kindSnapshot {
		return meta{}, false
	}
	bits, err := strconv.ParseUint(tail[1:3], 16, 8)
	if err != nil {
		return meta{}, false
	}
	for mode := backends.SingleNodeWriter; mode <= backends.SingleNodeMultiWriter; mode++ {
		if bits&(1<<(int(mode)-1)) != 0 {
			m.modes = append(m.modes, mode)
		}
	}
	if m.fsType, ok = fsOf(tail[3]); !ok {
		return meta{}, false
	}
	if m.mark, ok = fsOf(tail[4]); !ok {
		return meta{}, false
	}
	return m, true
}
