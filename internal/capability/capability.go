// Package capability checks CSI volume capabilities and turns them into the
// plain values the services and backends work with.
package capability

import (
	"fmt"
	"slices"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/csi-libstorage/csi-libstorage/backends"
)

// FSTypes are the filesystems the node side can create.
var FSTypes = []string{"ext4", "xfs", "btrfs"}

// DefaultFSType is used when neither the capability nor the volume names one.
const DefaultFSType = "ext4"

// Cap is one checked capability.
type Cap struct {
	Mode   backends.AccessMode
	Block  bool
	FSType string // empty when not given
	Flags  []string
}

var modes = map[csi.VolumeCapability_AccessMode_Mode]backends.AccessMode{
	csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER:        backends.SingleNodeWriter,
	csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY:   backends.SingleNodeReaderOnly,
	csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY:    backends.MultiNodeReaderOnly,
	csi.VolumeCapability_AccessMode_MULTI_NODE_SINGLE_WRITER:  backends.MultiNodeSingleWriter,
	csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER:   backends.MultiNodeMultiWriter,
	csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER: backends.SingleNodeSingleWriter,
	csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER:  backends.SingleNodeMultiWriter,
}

// Parse checks one capability. filesystemFS lists extra filesystem types a
// filesystem backend serves (nfs); block backends pass nil.
func Parse(c *csi.VolumeCapability, extraFS ...string) (Cap, error) {
	if c == nil {
		return Cap{}, fmt.Errorf("volume capability is required")
	}
	m, ok := modes[c.GetAccessMode().GetMode()]
	if !ok {
		return Cap{}, fmt.Errorf("access mode %v is not supported; use one of SINGLE_NODE_WRITER, SINGLE_NODE_READER_ONLY, MULTI_NODE_READER_ONLY, MULTI_NODE_SINGLE_WRITER, MULTI_NODE_MULTI_WRITER",
			c.GetAccessMode().GetMode())
	}
	out := Cap{Mode: m}
	switch t := c.GetAccessType().(type) {
	case *csi.VolumeCapability_Block:
		out.Block = true
	case *csi.VolumeCapability_Mount:
		out.FSType = strings.ToLower(t.Mount.GetFsType())
		if out.FSType != "" && !slices.Contains(FSTypes, out.FSType) && !slices.Contains(extraFS, out.FSType) {
			return Cap{}, fmt.Errorf("fs_type %q is not supported; use one of %s", out.FSType, strings.Join(append(slices.Clone(FSTypes), extraFS...), ", "))
		}
		for _, f := range t.Mount.GetMountFlags() {
			if err := checkFlag(f); err != nil {
				return Cap{}, err
			}
		}
		out.Flags = t.Mount.GetMountFlags()
	default:
		return Cap{}, fmt.Errorf("volume capability needs an access type, block or mount")
	}
	return out, nil
}

// checkFlag refuses mount flags that would change what is mounted where, or
// that could smuggle options through the comma-separated option string.
func checkFlag(f string) error {
	if f == "" || strings.ContainsAny(f, ",\x00\n") || strings.HasPrefix(f, "-") {
		return fmt.Errorf("mount flag %q is not a single mount option", f)
	}
	switch strings.SplitN(f, "=", 2)[0] {
	case "bind", "rbind", "move", "remount", "loop", "offset", "sizelimit":
		return fmt.Errorf("mount flag %q is managed by the plugin and cannot be given", f)
	}
	return nil
}

// ParseAll checks a list of capabilities, which must not be empty.
func ParseAll(cs []*csi.VolumeCapability, extraFS ...string) ([]Cap, error) {
	if len(cs) == 0 {
		return nil, fmt.Errorf("volume capabilities are required")
	}
	out := make([]Cap, 0, len(cs))
	for _, c := range cs {
		p, err := Parse(c, extraFS...)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}
