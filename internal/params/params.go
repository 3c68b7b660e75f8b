// Package params checks CreateVolume parameters: the keys every backend
// understands, the names mesos-module-dvdi and REX-Ray users already write,
// and each backend's own keys. Unknown keys are refused by name, so a typo
// in a storage class or disk profile is caught at create time instead of
// silently giving a different volume.
package params

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/csi-libstorage/csi-libstorage/internal/capability"
)

// Keys every backend accepts.
const (
	BackendKey = "backend" // which configured backend instance
	FSTypeKey  = "fsType"  // ext4 (default), xfs, btrfs
	// The mesos-module-dvdi / REX-Ray option names.
	SizeKey        = "size"        // GiB, used when the request has no capacity range
	NewFSTypeKey   = "newfstype"   // same as fsType
	OverwriteFSKey = "overwritefs" // format over a foreign filesystem; needs the operator switch
	VolumeTypeKey  = "volumetype"  // a backend's volume type (EBS "type")
	IOPSKey        = "iops"        // provisioned IOPS, for backends that have them
)

// Common lists the keys handled here for every backend.
var Common = []string{BackendKey, FSTypeKey, SizeKey, NewFSTypeKey, OverwriteFSKey}

// KubernetesPrefix marks keys the Kubernetes external-provisioner adds;
// they carry no meaning for the backend and are dropped.
const KubernetesPrefix = "csi.storage.k8s.io/"

// Check validates in against the common keys and the backend's own keys
// and returns the parameters to store with the volume. allowOverwrite is
// the operator's switch for overwritefs.
func Check(in map[string]string, backendKeys []string, allowOverwrite bool) (map[string]string, error) {
	out := make(map[string]string, len(in))
	keys := make([]string, 0, len(in))
	for k := range in {
		keys = append(keys, k)
	}
	sort.Strings(keys) // report the first bad key deterministically
	for _, k := range keys {
		v := in[k]
		if strings.HasPrefix(k, KubernetesPrefix) {
			continue
		}
		if !slices.Contains(Common, k) && !slices.Contains(backendKeys, k) {
			return nil, fmt.Errorf("parameter %q is not known; this backend accepts %s", k, strings.Join(append(slices.Clone(Common), backendKeys...), ", "))
		}
		if len(v) > 1024 || strings.ContainsAny(v, "\x00") {
			return nil, fmt.Errorf("parameter %q: value is not valid text of at most 1024 bytes", k)
		}
		switch k {
		case FSTypeKey, NewFSTypeKey:
			if !slices.Contains(capability.FSTypes, v) {
				return nil, fmt.Errorf("parameter %s=%q: use one of %s", k, v, strings.Join(capability.FSTypes, ", "))
			}
		case SizeKey:
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n <= 0 || n > 1<<20 {
				return nil, fmt.Errorf("parameter size=%q: want a whole number of GiB between 1 and 1048576", v)
			}
		case OverwriteFSKey:
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, fmt.Errorf("parameter overwritefs=%q: want true or false", v)
			}
			if b && !allowOverwrite {
				return nil, fmt.Errorf("parameter overwritefs=true lets the plugin format a device that already holds a filesystem, and is refused unless the operator sets allowOverwrite: true in the plugin's configuration file")
			}
		}
		out[k] = v
	}
	if a, b := in[FSTypeKey], in[NewFSTypeKey]; a != "" && b != "" && a != b {
		return nil, fmt.Errorf("parameters fsType=%q and newfstype=%q disagree", a, b)
	}
	return out, nil
}

// FSType returns the filesystem type named by the parameters, if any.
func FSType(p map[string]string) string {
	if v := p[FSTypeKey]; v != "" {
		return v
	}
	return p[NewFSTypeKey]
}

// Overwrite reports whether the parameters ask for overwritefs.
func Overwrite(p map[string]string) bool {
	b, _ := strconv.ParseBool(p[OverwriteFSKey])
	return b
}
