// Package volname keeps what the plugin must remember about a volume in the
// volume's name, for storage systems that have no tags (ScaleIO) or whose
// tags are awkward to change atomically (XtremIO):
//
//	<stem>-<hash>_<kind><modes><fs><mark><by>
//
// stem is a readable prefix of the CSI name, hash 12 hex digits of the
// SHA-256 of the whole CSI name (so two CSI names never share a volume),
// kind is m (mount), b (block) or s (snapshot), modes two hex digits (one
// bit per access mode the volume was created for), fs the requested
// filesystem, mark the format mark of invariant 1, and by whether the node
// service attached the volume itself (n) or the controller did (c).
// Changing the mark or the attacher renames the volume, an atomic change on
// the storage that every plugin process sees.
package volname

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/csi-libstorage/csi-libstorage/backends"
)

// Kinds of named objects.
const (
	Mount    = 'm'
	Block    = 'b'
	Snapshot = 's'
)

// MetaLen is the length of the part after the key: "_" and 6 codes.
const MetaLen = 7

// fsCodes are the one-character codes of filesystems in names; '0' is none.
var codes = map[string]byte{"": '0', "ext4": '4', "xfs": 'x', "btrfs": 't', "ext3": '3', "ext2": '2', backends.FormattedRaw: 'r'}

func fsOf(c byte) (string, bool) {
	for k, v := range codes {
		if v == c {
			return k, true
		}
	}
	return "", false
}

// HasCode reports whether fsType (or raw) has a code in names.
func HasCode(fsType string) bool {
	_, ok := codes[fsType]
	return ok && fsType != ""
}

// Meta is what a volume's name records.
type Meta struct {
	Key    string // <stem>-<hash>: stable for one CSI name
	Kind   byte
	Modes  []backends.AccessMode
	FSType string // requested
	Mark   string // formatted mark
	// ByNode: the node service attached the volume itself (no
	// ControllerPublish came first) and detaches it on unstage.
	ByNode bool
}

// Key derives the stable, collision-safe part of a volume's name from
// its CSI name: a readable stem (ScaleIO names take letters, digits, '-',
// '.' and '_'; the rest become '-') and a hash of the whole name.
//
// maxLen is the storage's longest name; the stem takes what the hash and
// the meta codes leave.
func Key(csiName string, maxLen int) string {
	stemLen := maxLen - 1 - 12 - MetaLen
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

// Name returns the name that records m.
func (m Meta) Name() string {
	var bits int
	for _, mode := range m.Modes {
		if mode > backends.AccessUnknown && mode <= backends.SingleNodeMultiWriter {
			bits |= 1 << (int(mode) - 1)
		}
	}
	by := 'c'
	if m.ByNode {
		by = 'n'
	}
	return fmt.Sprintf("%s_%c%02x%c%c%c", m.Key, m.Kind, bits, codes[m.FSType], codes[m.Mark], by)
}

// Parse reads a name Name gave; ok is false for any other volume on the
// storage, which a backend then leaves alone.
func Parse(n string) (Meta, bool) {
	key, tail, ok := strings.Cut(n, "_")
	if !ok || len(tail) != 6 || (tail[5] != 'c' && tail[5] != 'n') || len(key) < 14 || key[len(key)-13] != '-' {
		return Meta{}, false
	}
	m := Meta{Key: key, Kind: tail[0], ByNode: tail[5] == 'n'}
	if m.Kind != Mount && m.Kind != Block && m.Kind != Snapshot {
		return Meta{}, false
	}
	bits, err := strconv.ParseUint(tail[1:3], 16, 8)
	if err != nil {
		return Meta{}, false
	}
	for mode := backends.SingleNodeWriter; mode <= backends.SingleNodeMultiWriter; mode++ {
		if bits&(1<<(int(mode)-1)) != 0 {
			m.Modes = append(m.Modes, mode)
		}
	}
	if m.FSType, ok = fsOf(tail[3]); !ok {
		return Meta{}, false
	}
	if m.Mark, ok = fsOf(tail[4]); !ok {
		return Meta{}, false
	}
	return m, true
}

// AttachmentMode is the mode an existing attachment is taken to have when
// the storage does not record it: the most permissive multi-node mode the
// volume was created for, else its first mode. backends.CheckAttach then
// allows another node only where the volume's modes allow it.
func AttachmentMode(modes []backends.AccessMode) backends.AccessMode {
	for _, m := range []backends.AccessMode{backends.MultiNodeMultiWriter, backends.MultiNodeSingleWriter, backends.MultiNodeReaderOnly} {
		if slices.Contains(modes, m) {
			return m
		}
	}
	if len(modes) > 0 {
		return modes[0]
	}
	return backends.SingleNodeWriter
}

// Find returns the item whose name carries key, whatever the rest of its
// mark says now, or nil. Both gateways list volumes and snapshots whose
// names this package wrote; name reads one item's name.
func Find[T any](items []T, name func(*T) string, key string) *T {
	for i := range items {
		if m, ok := Parse(name(&items[i])); ok && m.Key == key {
			return &items[i]
		}
	}
	return nil
}
