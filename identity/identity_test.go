package identity

import (
	"context"
	"errors"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/backends/file"
)

// sick is a backend whose probe fails.
type sick struct{ backends.Backend }

func (sick) Probe(context.Context) error { return errors.New("pool unreachable") }

func TestIdentity(t *testing.T) {
	ctx := context.Background()
	pool, err := file.New(file.Config{Name: "local", Dir: t.TempDir()}, file.Options{})
	if err != nil {
		t.Fatal(err)
	}
	healthy, _ := backends.NewSet(pool)
	info, err := New(healthy, true, nil).GetPluginInfo(ctx, &csi.GetPluginInfoRequest{})
	if err != nil || info.GetName() != PluginName || info.GetVendorVersion() == "" {
		t.Fatalf("GetPluginInfo = %v, %v", info, err)
	}
	for _, controller := range []bool{true, false} {
		r, err := New(healthy, controller, nil).GetPluginCapabilities(ctx, &csi.GetPluginCapabilitiesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		has := false
		for _, c := range r.GetCapabilities() {
			if c.GetService().GetType() == csi.PluginCapability_Service_CONTROLLER_SERVICE {
				has = true
			}
		}
		if has != controller {
			t.Errorf("controller=%v: CONTROLLER_SERVICE advertised=%v (Mesos fails start-up on a mismatch)", controller, has)
		}
	}
	p, err := New(healthy, true, nil).Probe(ctx, &csi.ProbeRequest{})
	if err != nil || !p.GetReady().GetValue() {
		t.Fatalf("Probe of a healthy pool = %v, %v", p, err)
	}
	sickSet, _ := backends.NewSet(sick{pool})
	// An unhealthy backend is "not ready", never an error: Mesos treats any
	// Probe error at start-up as fatal.
	p, err = New(sickSet, true, nil).Probe(ctx, &csi.ProbeRequest{})
	if err != nil || p.GetReady().GetValue() {
		t.Fatalf("Probe with a failing backend = %v, %v; want ready=false and no error", p, err)
	}
}
