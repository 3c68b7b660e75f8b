package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/csi-libstorage/csi-libstorage/deploy/check/mesos"
)

// slrpProfiles returns the shipped disk profiles that select the shipped
// SLRP, by name.
func slrpProfiles(t *testing.T) map[string]mesos.CSIManifest {
	t.Helper()
	rp := loadDeploy(t, slrpFile).(*mesos.ResourceProviderInfo)
	m := loadDeploy(t, profilesFile).(*mesos.DiskProfileMapping)
	out := map[string]mesos.CSIManifest{}
	for name, p := range m.ProfileMatrix {
		sel := false
		if s := p.CSIPluginTypeSelector; s != nil && s.PluginType == rp.Storage.Plugin.Type {
			sel = true
		}
		if s := p.ResourceProviderSelector; s != nil && slices.Contains(s.ResourceProviders, mesos.ResourceProviderRef{Type: rp.Type, Name: rp.Name}) {
			sel = true
		}
		if sel {
			out[name] = p
		}
	}
	if len(out) == 0 {
		t.Fatal("no shipped disk profile selects the shipped SLRP")
	}
	return out
}

// reconcile replays the SLRP's reconciliation: one unpaged ListVolumes and
// GetCapacity per profile.
func reconcile(t *testing.T, p *plugin, profiles map[string]mesos.CSIManifest) map[string]*csi.ListVolumesResponse_Entry {
	t.Helper()
	lv := must(t, "ListVolumes", func(ctx context.Context) (*csi.ListVolumesResponse, error) {
		return p.ctl.ListVolumes(ctx, &csi.ListVolumesRequest{})
	})
	if lv.GetNextToken() != "" {
		t.Errorf("unpaged ListVolumes returned next_token %q; Mesos ignores it and would miss volumes", lv.GetNextToken())
	}
	vols := map[string]*csi.ListVolumesResponse_Entry{}
	for _, e := range lv.GetEntries() {
		vols[e.GetVolume().GetVolumeId()] = e
	}
	for name, prof := range profiles {
		gc := must(t, "GetCapacity "+name, func(ctx context.Context) (*csi.GetCapacityResponse, error) {
			return p.ctl.GetCapacity(ctx, &csi.GetCapacityRequest{
				VolumeCapabilities: []*csi.VolumeCapability{capability(prof.VolumeCapabilities)},
				Parameters:         prof.CreateParameters,
			})
		})
		if gc.GetAvailableCapacity() < 512*mib {
			t.Errorf("GetCapacity for profile %s: %d bytes; the SLRP would offer (almost) nothing", name, gc.GetAvailableCapacity())
		}
	}
	return vols
}

// TestStorageResourceProvider replays the SLRP (provider.cpp,
// v1_volume_manager.cpp) against the plugin it launches from the shipped
// resource provider config, for every shipped disk profile: reconciliation,
// CREATE_DISK with a retried create, ValidateVolumeCapabilities echoing its
// inputs, a task launch (ControllerPublish, NodeStage, NodePublish), and
// DESTROY_DISK (data deleted under the target, then NodeUnpublish,
// NodeUnstage, ControllerUnpublish, DeleteVolume).
func TestStorageResourceProvider(t *testing.T) {
	e := newEnv(t)
	pool := filepath.Join(e.dir, "local-pool")
	const agent = "7c1e0f7a-51b3-4d1e-8b0e-6a7f6f3d2c90-S0"
	p := e.slrpPlugin("slrp", agent, e.config(slrpConfig, pool))
	init := mesosInit(t, p, true, true)
	if init.nodeID != agent {
		t.Fatalf("NodeGetInfo node_id %q, want %q", init.nodeID, agent)
	}
	profiles := slrpProfiles(t)
	// <work_dir>/csi/<type>/<plugin name>/mounts
	rp := loadDeploy(t, slrpFile).(*mesos.ResourceProviderInfo)
	root := filepath.Join(e.dir, "agent", "csi", rp.Storage.Plugin.Type, rp.Storage.Plugin.Name, "mounts")

	if vols := reconcile(t, p, profiles); len(vols) != 0 {
		t.Errorf("fresh pool lists %d volumes", len(vols))
	}
	names := make([]string, 0, len(profiles))
	for n := range profiles {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		prof := profiles[name]
		t.Run(name, func(t *testing.T) {
			cap := capability(prof.VolumeCapabilities)
			block := prof.VolumeCapabilities.Block != nil
			mb := int64(64)
			if prof.VolumeCapabilities.Mount != nil && prof.VolumeCapabilities.Mount.FSType == "xfs" || prof.CreateParameters["fsType"] == "xfs" {
				mb = 320 // mkfs.xfs needs 300 MiB
			}
			// CREATE_DISK: named by the operation UUID, required = limit.
			req := &csi.CreateVolumeRequest{
				Name:               uuid4(),
				CapacityRange:      &csi.CapacityRange{RequiredBytes: mb * mib, LimitBytes: mb * mib},
				VolumeCapabilities: []*csi.VolumeCapability{cap},
				Parameters:         prof.CreateParameters,
			}
			created := must(t, "CreateVolume", func(ctx context.Context) (*csi.CreateVolumeResponse, error) {
				return p.ctl.CreateVolume(ctx, req)
			}).GetVolume()
			retried := must(t, "CreateVolume retried", func(ctx context.Context) (*csi.CreateVolumeResponse, error) {
				return p.ctl.CreateVolume(ctx, req)
			}).GetVolume()
			id := created.GetVolumeId()
			if retried.GetVolumeId() != id {
				t.Fatalf("retried CreateVolume gave %q, first %q", retried.GetVolumeId(), id)
			}
			if created.GetCapacityBytes() != mb*mib {
				t.Errorf("capacity %d, want exactly %d (the SLRP offers capacity/2^20 MB)", created.GetCapacityBytes(), mb*mib)
			}

			// The next reconciliation finds it.
			entry := reconcile(t, p, profiles)[id]
			if entry == nil {
				t.Fatalf("ListVolumes does not list %s", id)
			}
			if entry.GetVolume().GetCapacityBytes() != mb*mib {
				t.Errorf("listed capacity %d, want %d", entry.GetVolume().GetCapacityBytes(), mb*mib)
			}
			// CREATE_DISK on a listed volume: the disk's metadata is the
			// listed volume_context.
			vctx := entry.GetVolume().GetVolumeContext()
			vr := must(t, "ValidateVolumeCapabilities", func(ctx context.Context) (*csi.ValidateVolumeCapabilitiesResponse, error) {
				return p.ctl.ValidateVolumeCapabilities(ctx, &csi.ValidateVolumeCapabilitiesRequest{
					VolumeId: id, VolumeCapabilities: []*csi.VolumeCapability{cap},
					VolumeContext: vctx, Parameters: prof.CreateParameters,
				})
			})
			want := &csi.ValidateVolumeCapabilitiesResponse_Confirmed{
				VolumeContext: vctx, VolumeCapabilities: []*csi.VolumeCapability{cap}, Parameters: prof.CreateParameters,
			}
			if !proto.Equal(vr.GetConfirmed(), want) {
				t.Errorf("ValidateVolumeCapabilities confirmed %v (message %q), want exactly %v", vr.GetConfirmed(), vr.GetMessage(), want)
			}

			// Task launch.
			paths := volumePaths(root, id)
			pub := must(t, "ControllerPublishVolume", func(ctx context.Context) (*csi.ControllerPublishVolumeResponse, error) {
				return p.ctl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{
					VolumeId: id, NodeId: init.nodeID, VolumeCapability: cap, VolumeContext: vctx,
				})
			})
			mesosMkdirs(t, paths)
			must(t, "NodeStageVolume", func(ctx context.Context) (*csi.NodeStageVolumeResponse, error) {
				return p.node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{
					VolumeId: id, PublishContext: pub.GetPublishContext(), StagingTargetPath: paths.staging,
					VolumeCapability: cap, VolumeContext: vctx,
				})
			})
			must(t, "NodePublishVolume", func(ctx context.Context) (*csi.NodePublishVolumeResponse, error) {
				return p.node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{
					VolumeId: id, PublishContext: pub.GetPublishContext(), StagingTargetPath: paths.staging,
					TargetPath: paths.target, VolumeCapability: cap, VolumeContext: vctx,
				})
			})
			if _, err := os.Stat(paths.target); err != nil {
				t.Fatalf("target path not created: %v", err)
			}
			if ms := p.mountsAt(paths.target); len(ms) != 1 {
				t.Errorf("mounts at the target: %+v, want one", ms)
			} else if fs := prof.CreateParameters["fsType"]; !block && fs != "" && ms[0].FSType != fs {
				t.Errorf("target mounted as %s, want %s", ms[0].FSType, fs)
			}
			if m := readMeta(t, pool, id); len(m.Attachments) != 1 || m.Attachments[0].Node != agent || m.Attachments[0].ByNode {
				t.Errorf("attachments after ControllerPublish: %+v, want one controller attachment to %s", m.Attachments, agent)
			}
			data := randomData(t, 64<<10)
			if block {
				f, err := os.OpenFile(paths.target, os.O_RDWR, 0)
				if err != nil {
					t.Fatalf("open the published device: %v", err)
				}
				if _, err := f.WriteAt(data, 0); err != nil {
					t.Errorf("write the device: %v", err)
				}
				got := make([]byte, len(data))
				if _, err := f.ReadAt(got, 0); err != nil || !bytes.Equal(got, data) {
					t.Errorf("read back from the device: %v", err)
				}
				f.Close()
			} else {
				if err := os.MkdirAll(filepath.Join(paths.target, "db"), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(paths.target, "db", "data"), data, 0o600); err != nil {
					t.Fatalf("write through the target: %v", err)
				}
			}

			// DESTROY_DISK.
			if !block {
				ents, err := os.ReadDir(paths.target)
				if err != nil {
					t.Fatal(err)
				}
				for _, ent := range ents {
					if err := os.RemoveAll(filepath.Join(paths.target, ent.Name())); err != nil {
						t.Errorf("delete data under the target: %v", err)
					}
				}
			}
			must(t, "NodeUnpublishVolume", func(ctx context.Context) (*csi.NodeUnpublishVolumeResponse, error) {
				return p.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: paths.target})
			})
			if _, err := os.Lstat(paths.target); !os.IsNotExist(err) {
				t.Errorf("target still exists after NodeUnpublish (%v)", err)
			}
			must(t, "NodeUnstageVolume", func(ctx context.Context) (*csi.NodeUnstageVolumeResponse, error) {
				return p.node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: paths.staging})
			})
			if ls := volumeLoops(t, pool, id); len(ls) != 0 {
				t.Errorf("loop devices after NodeUnstage: %v", ls)
			}
			must(t, "ControllerUnpublishVolume", func(ctx context.Context) (*csi.ControllerUnpublishVolumeResponse, error) {
				return p.ctl.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: id, NodeId: init.nodeID})
			})
			if m := readMeta(t, pool, id); len(m.Attachments) != 0 {
				t.Errorf("attachments after ControllerUnpublish: %+v", m.Attachments)
			}
			must(t, "DeleteVolume", func(ctx context.Context) (*csi.DeleteVolumeResponse, error) {
				return p.ctl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id})
			})
			if _, ok := reconcile(t, p, profiles)[id]; ok {
				t.Errorf("ListVolumes still lists %s after DeleteVolume", id)
			}
			for _, p := range []string{metaPath(t, pool, id), imagePath(t, pool, id)} {
				if _, err := os.Stat(p); !os.IsNotExist(err) {
					t.Errorf("%s still in the pool after DeleteVolume (%v)", p, err)
				}
			}
			// Mesos retries DeleteVolume on DEADLINE_EXCEEDED: a repeat
			// must succeed.
			must(t, "DeleteVolume retried", func(ctx context.Context) (*csi.DeleteVolumeResponse, error) {
				return p.ctl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id})
			})
		})
	}
	p.stop()
	e.assertClean()
}

func getCapacity(t *testing.T, p *plugin, prof mesos.CSIManifest) int64 {
	t.Helper()
	return must(t, "GetCapacity", func(ctx context.Context) (*csi.GetCapacityResponse, error) {
		return p.ctl.GetCapacity(ctx, &csi.GetCapacityRequest{
			VolumeCapabilities: []*csi.VolumeCapability{capability(prof.VolumeCapabilities)}, Parameters: prof.CreateParameters,
		})
	}).GetAvailableCapacity()
}

// TestSLRPCapacityCountsCreatedDisks checks the SLRP's arithmetic: after
// CREATE_DISK of N bytes, the agent offers the new disk (from ListVolumes)
// plus the pool (from GetCapacity). If GetCapacity does not drop by N, the
// same bytes are offered twice, and disks whose sum exceeds the storage
// are created and handed to tasks that later fail with I/O errors when the
// pool fills. The shipped SLRP config sets no capacity cap, and the
// shipped ext4 and raw-block profiles make sparse images.
func TestSLRPCapacityCountsCreatedDisks(t *testing.T) {
	e := newEnv(t)
	pool := filepath.Join(e.dir, "local-pool")
	p := e.slrpPlugin("slrp", "agent-cap-S0", e.config(slrpConfig, pool))
	mesosInit(t, p, true, true)
	prof, ok := slrpProfiles(t)["ext4"]
	if !ok || prof.CreateParameters["preallocate"] == "true" {
		t.Fatal("the shipped ext4 profile is gone or preallocates; pick a sparse profile")
	}
	before := getCapacity(t, p, prof)
	size := before / 5 * 3 / mib * mib // three fifths of what is offered
	create := func(name string) (*csi.Volume, error) {
		r, err := call(t, func(ctx context.Context) (*csi.CreateVolumeResponse, error) {
			return p.ctl.CreateVolume(ctx, &csi.CreateVolumeRequest{
				Name: name, CapacityRange: &csi.CapacityRange{RequiredBytes: size, LimitBytes: size},
				VolumeCapabilities: []*csi.VolumeCapability{capability(prof.VolumeCapabilities)}, Parameters: prof.CreateParameters,
			})
		})
		return r.GetVolume(), err
	}
	first, err := create(uuid4())
	if err != nil {
		t.Fatalf("CREATE_DISK of %d bytes out of %d offered: %v", size, before, err)
	}
	defer deleteVolume(t, p, first.GetVolumeId())
	after := getCapacity(t, p, prof)
	const slack = 512 * mib // other tests share the filesystem
	if before-after < size-slack {
		t.Errorf("GetCapacity %d before and %d after creating a %d-byte disk: the SLRP now offers %d bytes of pool plus the %d-byte disk out of %d bytes",
			before, after, size, after, size, before)
	}
	second, err := create(uuid4())
	if err == nil {
		defer deleteVolume(t, p, second.GetVolumeId())
		t.Errorf("a second %d-byte disk was created although only %d bytes were offered for both", size, before)
	} else {
		wantCode(t, "CreateVolume beyond the pool", err, codes.ResourceExhausted)
	}
	t.Cleanup(func() {
		p.stop()
		e.assertClean()
	})
}
