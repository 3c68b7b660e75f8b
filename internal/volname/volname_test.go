package volname

import (
	"strings"
	"testing"

	"github.com/csi-libstorage/csi-libstorage/backends"
)

func TestNameFitsEveryLimit(t *testing.T) {
	long := strings.Repeat("x", 300)
	for _, maxLen := range []int{31, 64} {
		for _, csi := range []string{"a", long, long + "y", "pvc-" + long} {
			m := Meta{Key: Key(csi, maxLen), Kind: Mount, Modes: []backends.AccessMode{backends.SingleNodeSingleWriter}, FSType: "btrfs", Mark: "ext4", ByNode: true}
			n := m.Name()
			if len(n) > maxLen {
				t.Errorf("max %d: %q has %d characters", maxLen, n, len(n))
			}
			got, ok := Parse(n)
			if !ok || got.Key != m.Key || got.Mark != "ext4" || got.FSType != "btrfs" || len(got.Modes) != 1 || got.Modes[0] != backends.SingleNodeSingleWriter || !got.ByNode {
				t.Errorf("max %d: Parse(%q) = %+v, %t", maxLen, n, got, ok)
			}
		}
		if Key(long, maxLen) == Key(long+"y", maxLen) {
			t.Errorf("max %d: names that differ only past the stem share a key", maxLen)
		}
	}
}

func TestAttachmentMode(t *testing.T) {
	tests := []struct {
		modes []backends.AccessMode
		want  backends.AccessMode
	}{
		{nil, backends.SingleNodeWriter},
		{[]backends.AccessMode{backends.SingleNodeReaderOnly}, backends.SingleNodeReaderOnly},
		{[]backends.AccessMode{backends.SingleNodeWriter, backends.MultiNodeReaderOnly}, backends.MultiNodeReaderOnly},
		{[]backends.AccessMode{backends.MultiNodeReaderOnly, backends.MultiNodeMultiWriter}, backends.MultiNodeMultiWriter},
	}
	for _, tt := range tests {
		if got := AttachmentMode(tt.modes); got != tt.want {
			t.Errorf("AttachmentMode(%v) = %s, want %s", tt.modes, got, tt.want)
		}
	}
}

func TestFind(t *testing.T) {
	type item struct{ name string }
	a := Meta{Key: Key("alpha", 31), Kind: Mount}
	b := Meta{Key: Key("beta", 31), Kind: Block, Mark: "raw"}
	items := []item{{"not-ours"}, {a.Name()}, {b.Name()}}
	name := func(i *item) string { return i.name }
	cases := []struct {
		key  string
		want *item
	}{
		{a.Key, &items[1]},
		{b.Key, &items[2]}, // whatever its mark says
		{Key("gamma", 31), nil},
	}
	for _, tc := range cases {
		if got := Find(items, name, tc.key); got != tc.want {
			t.Errorf("Find(%q) = %v, want %v", tc.key, got, tc.want)
		}
	}
}
