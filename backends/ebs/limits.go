package ebs

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"

	"github.com/csi-libstorage/csi-libstorage/backends"
)

// Attachment limits, from AWS's "Amazon EBS volume limits for Amazon EC2
// instances". Every count includes the root volume.
const (
	// nitroSharedSlots is what most Nitro instance types share between
	// EBS volumes, network interfaces and NVMe instance-store volumes.
	nitroSharedSlots = 28
	// xenVolumes: attaching more than 40 volumes to a Xen instance can
	// keep it from booting.
	xenVolumes = 40
)

// dedicatedFamilies have an EBS volume limit of their own, by size, not
// shared with network interfaces or instance stores.
var dedicatedFamilies = map[string]bool{
	"m7a": true, "m7i": true, "m7i-flex": true, "m8g": true,
	"c7a": true, "c7i": true, "c7i-flex": true, "c8g": true,
	"r7a": true, "r7i": true, "r7iz": true, "r8g": true, "x8g": true,
	"u7i-6tb": true, "u7i-8tb": true, "u7i-12tb": true, "u7in-16tb": true, "u7in-24tb": true, "u7in-32tb": true, "u7inh-32tb": true,
	"i7ie": true, "i8g": true,
	"f2": true, "g6": true, "g6e": true, "gr6": true, "p5": true, "p5e": true, "p5en": true, "trn2": true, "trn2u": true,
	"hpc7a": true,
}

// dedicatedBySize is the dedicated limit per instance size; sizes not
// listed (medium up to 12xlarge) take 32.
var dedicatedBySize = map[string]int{
	"16xlarge": 48, "24xlarge": 64, "32xlarge": 88, "48xlarge": 128,
	"metal-16xl": 39, "metal-24xl": 39, "metal-32xl": 79, "metal-48xl": 79,
}

// xenFamilies are the instance families built on Xen rather than Nitro.
var xenFamilies = map[string]bool{
	"t1": true, "t2": true, "m1": true, "m2": true, "m3": true, "m4": true,
	"c1": true, "c3": true, "c4": true, "r3": true, "r4": true, "x1": true, "x1e": true,
	"i2": true, "i3": true, "d2": true, "h1": true, "g2": true, "g3": true, "g3s": true,
	"p2": true, "p3": true, "f1": true, "cc2": true, "cr1": true, "hs1": true,
}

// volumeLimit is how many volumes, root included, an instance of
// instanceType takes with enis network interfaces and instanceStore NVMe
// instance-store volumes (-1: not known, counted as none). The configured
// maxVolumesPerNode overrides it; an unknown type gets the Nitro shared
// limit, the common case.
func (b *Backend) volumeLimit(instanceType string, enis, instanceStore int) int {
	if b.maxVolumes > 0 {
		return b.maxVolumes
	}
	return instanceVolumeLimit(instanceType, enis, instanceStore)
}

func instanceVolumeLimit(instanceType string, enis, instanceStore int) int {
	family, size, _ := strings.Cut(instanceType, ".")
	switch {
	case dedicatedFamilies[family]:
		if n, ok := dedicatedBySize[size]; ok {
			return n
		}
		return 32
	case xenFamilies[family]:
		return xenVolumes
	}
	return max(nitroSharedSlots-max(enis, 1)-max(instanceStore, 0), 1)
}

// NodeMaxVolumes implements backends.NodeVolumeLimiter: how many more
// volumes this node takes besides its root volume, from its instance type
// and network interfaces (instance metadata) and the NVMe instance-store
// disks it sees in sysfs, unless maxVolumesPerNode is configured.
func (b *Backend) NodeMaxVolumes(ctx context.Context) (int64, error) {
	if b.maxVolumes > 0 {
		return int64(b.maxVolumes - 1), nil
	}
	typ, err := b.metadata(ctx, "instance-type")
	if err != nil {
		return 0, err
	}
	macs, err := b.metadata(ctx, "network/interfaces/macs")
	if err != nil {
		return 0, err
	}
	enis := len(strings.Fields(macs))
	n := b.volumeLimit(typ, enis, b.instanceStoreDisks()) - 1 // the root volume
	return int64(max(n, 1)), nil
}

// instanceStoreDisks counts the NVMe instance-store disks in sysfs.
func (b *Backend) instanceStoreDisks() int {
	ms, _ := filepath.Glob(filepath.Join(b.sysfs, "block", "nvme*", "device", "model"))
	n := 0
	for _, m := range ms {
		raw, err := os.ReadFile(m)
		if err == nil && strings.Contains(string(raw), "Instance Storage") {
			n++
		}
	}
	return n
}

// metadata reads one instance-metadata path.
func (b *Backend) metadata(ctx context.Context, path string) (string, error) {
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := b.imds.GetMetadata(ictx, &imds.GetMetadataInput{Path: path})
	if err != nil {
		return "", fmt.Errorf("%w: %s from instance metadata: %v", backends.ErrUnavailable, path, err)
	}
	defer out.Content.Close()
	raw, err := io.ReadAll(io.LimitReader(out.Content, 64<<10))
	if err != nil {
		return "", fmt.Errorf("%w: %s from instance metadata: %v", backends.ErrUnavailable, path, err)
	}
	return strings.TrimSpace(string(raw)), nil
}
