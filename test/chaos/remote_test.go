package chaos_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/csi-libstorage/csi-libstorage/internal/config"
	"github.com/csi-libstorage/csi-libstorage/internal/wiring"
	"github.com/csi-libstorage/csi-libstorage/test/harness"
	scaleiosim "github.com/csi-libstorage/csi-libstorage/test/sim/scaleio"
	xtremiosim "github.com/csi-libstorage/csi-libstorage/test/sim/xtremio"
)

// The same-name races against the ScaleIO and XtremIO gateways: their
// volumes are found by name only ("name already in use",
// vol_obj_name_not_unique), so concurrent creates of one name are where a
// backend could hand out two volumes or lose one. Two controllers serve the
// clients, as after a failover of the controller: each has its own
// per-volume locks, so only the backend's handling of the gateway's answers
// keeps a name to one volume.

func TestCreateDeleteSameNameChaosScaleIO(t *testing.T) {
	dir := harness.TempDir(t)
	sim := scaleiosim.New(scaleiosim.Options{
		User: "admin", Password: "Chaos-Passw0rd", SystemID: "14dbbf5617523654", SystemName: "sio",
		ProtectionDomain: "pd1", PoolName: "pool1",
	})
	endpoint := sim.Start()
	defer sim.Close()
	t.Setenv("CHAOS_SIO_PASSWORD", "Chaos-Passw0rd")
	ctls := controllersOn(t, dir, fmt.Sprintf(`backends:
  - name: sio
    type: scaleio
    gateway: %s
    user: admin
    passwordEnv: CHAOS_SIO_PASSWORD
    system: sio
    protectionDomain: pd1
    storagePool: pool1
    sdcGUID: 9E56672F-2F4B-4A42-BFF4-88B6846FBFDA
`, endpoint))
	createDeleteSameName(t, ctls, 8<<30)
	if vs := sim.Volumes(); len(vs) != 0 {
		t.Errorf("volumes left on the gateway: %+v", vs)
	}
}

func TestCreateDeleteSameNameChaosXtremIO(t *testing.T) {
	dir := harness.TempDir(t)
	sim := xtremiosim.New(xtremiosim.Options{User: "admin", Password: "Chaos-Xio-Pw", Cluster: "xbrick1"})
	endpoint := sim.Start()
	defer sim.Close()
	host := filepath.Join(dir, "host")
	if err := os.MkdirAll(filepath.Join(host, "etc/iscsi"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(host, "etc/iscsi/initiatorname.iscsi"), []byte("InitiatorName=iqn.1993-08.org.debian:01:chaos\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CHAOS_XIO_PASSWORD", "Chaos-Xio-Pw")
	ctls := controllersOn(t, dir, fmt.Sprintf(`backends:
  - name: xio
    type: xtremio
    xms: %s
    user: admin
    passwordEnv: CHAOS_XIO_PASSWORD
    cluster: xbrick1
    hostRoot: %s
`, endpoint, host))
	createDeleteSameName(t, ctls, 1<<30)
	if vs := sim.Volumes(); len(vs) != 0 {
		t.Errorf("volumes left on the XMS: %+v", vs)
	}
}

// controllersOn serves two controllers of the configuration yaml in this
// process and returns a client of each.
func controllersOn(t *testing.T, dir, yaml string) []csi.ControllerClient {
	t.Helper()
	return []csi.ControllerClient{controllerOn(t, dir, "a", yaml), controllerOn(t, dir, "b", yaml)}
}

func controllerOn(t *testing.T, dir, name, yaml string) csi.ControllerClient {
	t.Helper()
	cfgPath := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, name+".sock")
	ctx, cancel := context.WithCancel(context.Background())
	p, err := wiring.New(ctx, wiring.Options{Endpoint: "unix://" + sock, NodeID: "controller", Mode: wiring.ModeController, Config: cfg, Logger: zap.NewNop()})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx) }()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return csi.NewControllerClient(conn)
}
