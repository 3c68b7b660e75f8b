package capability

import (
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/csi-libstorage/csi-libstorage/backends"
)

func mount(mode csi.VolumeCapability_AccessMode_Mode, fs string, flags ...string) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: fs, MountFlags: flags}},
	}
}

func TestParse(t *testing.T) {
	snw := csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER
	tests := []struct {
		name string
		c    *csi.VolumeCapability
		want Cap
		err  string
	}{
		{"nil", nil, Cap{}, "required"},
		{"mount ext4", mount(snw, "EXT4", "noatime"), Cap{Mode: backends.SingleNodeWriter, FSType: "ext4", Flags: []string{"noatime"}}, ""},
		{"block", &csi.VolumeCapability{AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER}, AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}}}, Cap{Mode: backends.MultiNodeMultiWriter, Block: true}, ""},
		{"unknown mode", mount(42, ""), Cap{}, "access mode"},
		{"unknown mode zero", mount(csi.VolumeCapability_AccessMode_UNKNOWN, ""), Cap{}, "access mode"},
		{"no access type", &csi.VolumeCapability{AccessMode: &csi.VolumeCapability_AccessMode{Mode: snw}}, Cap{}, "access type"},
		{"bad fs", mount(snw, "ntfs"), Cap{}, "ntfs"},
		{"option injection", mount(snw, "", "ro,exec"), Cap{}, "single mount option"},
		{"bind flag", mount(snw, "", "bind"), Cap{}, "managed by the plugin"},
		{"dash flag", mount(snw, "", "-t"), Cap{}, "single mount option"},
	}
	for _, tt := range tests {
		got, err := Parse(tt.c)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: err = %v, want %q", tt.name, err, tt.err)
			}
			continue
		}
		if err != nil || got.Mode != tt.want.Mode || got.Block != tt.want.Block || got.FSType != tt.want.FSType || strings.Join(got.Flags, ",") != strings.Join(tt.want.Flags, ",") {
			t.Errorf("%s: Parse = %+v, %v; want %+v", tt.name, got, err, tt.want)
		}
	}
	if _, err := Parse(mount(snw, "nfs"), "nfs"); err != nil {
		t.Errorf("extra filesystem type refused: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(int32(1), "ext4", "noatime")
	f.Add(int32(7), "", "a,b")
	f.Add(int32(-1), "xfs\x00", "bind")
	f.Fuzz(func(t *testing.T, mode int32, fs, flag string) {
		c, err := Parse(mount(csi.VolumeCapability_AccessMode_Mode(mode), fs, flag))
		if err != nil {
			return
		}
		if c.Mode == backends.AccessUnknown {
			t.Fatal("accepted an unknown access mode")
		}
		for _, fl := range c.Flags {
			if strings.ContainsAny(fl, ",\x00\n") || fl == "" {
				t.Fatalf("accepted mount flag %q", fl)
			}
		}
	})
}
