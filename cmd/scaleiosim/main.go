// Command scaleiosim runs the stateful ScaleIO / PowerFlex gateway test
// server of test/sim/scaleio as a process of its own: for trying the
// ScaleIO backend locally, and for tests that must kill and restart the
// plugin while the "storage" keeps its state. Mapped volumes appear as real
// loop devices behind emc-vol-<system>-<volume> links, one directory per
// SDC.
//
//	scaleiosim --dir /var/tmp/scaleiosim --sdc 9E56672F-2F4B-4A42-BFF4-88B6846FBFDA
//
// It prints one JSON line with the gateway URL, the system id, the images
// directory, each SDC's by-id directory and an admin endpoint that sets SDC
// connection states (PUT <admin>/sdcs/<guid>/state, body Disconnected),
// serves until SIGTERM or SIGINT, then detaches every loop device it made.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	ec2sim "github.com/csi-libstorage/csi-libstorage/test/sim/ec2"
	scaleiosim "github.com/csi-libstorage/csi-libstorage/test/sim/scaleio"
)

// Endpoints is the line the command prints.
type Endpoints struct {
	Gateway  string            `json:"gateway"`
	SystemID string            `json:"systemId"`
	Images   string            `json:"images"`
	ByIDDir  map[string]string `json:"byIdDir"`
	// Admin serves scaleiosim.Server.AdminHandler: SDC connection states.
	Admin string `json:"admin"`
}

type sdcs []string

func (s *sdcs) String() string     { return fmt.Sprint(*s) }
func (s *sdcs) Set(v string) error { *s = append(*s, v); return nil }

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "scaleiosim:", err)
		os.Exit(1)
	}
}

func run() error {
	var guids sdcs
	dir := flag.String("dir", "/var/tmp/scaleiosim", "where volume images and by-id links live")
	user := flag.String("user", "admin", "the gateway user")
	passwordEnv := flag.String("password-env", "SCALEIOSIM_PASSWORD", "the environment variable holding the gateway password")
	flag.Var(&guids, "sdc", "an SDC GUID (repeatable)")
	flag.Parse()
	password := os.Getenv(*passwordEnv)
	if password == "" {
		return fmt.Errorf("set %s to the gateway password", *passwordEnv)
	}
	if len(guids) == 0 {
		guids = sdcs{"9E56672F-2F4B-4A42-BFF4-88B6846FBFDA"}
	}
	const system = "14dbbf5617523654"
	loops := &scaleiosim.LoopDevices{
		Loops:    &ec2sim.LoopDevices{ImageDir: filepath.Join(*dir, "images"), ByIDDir: filepath.Join(*dir, "loop-links"), PerInstance: true},
		ByIDDir:  filepath.Join(*dir, "by-id"),
		SystemID: system,
	}
	defer loops.Close()
	var list []scaleiosim.SDC
	ep := Endpoints{SystemID: system, Images: loops.Loops.ImageDir, ByIDDir: map[string]string{}}
	for i, g := range guids {
		list = append(list, scaleiosim.SDC{ID: fmt.Sprintf("d0f055a7%08x", i), GUID: g})
		ep.ByIDDir[g] = loops.LinkDir(g)
		if err := os.MkdirAll(loops.LinkDir(g), 0o755); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(loops.Loops.ImageDir, 0o700); err != nil {
		return err
	}
	sim := scaleiosim.New(scaleiosim.Options{User: *user, Password: password, SystemID: system, SystemName: "sim",
		ProtectionDomain: "pd1", PoolName: "pool1", SDCs: list, Devices: loops})
	ep.Gateway = sim.Start()
	defer sim.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	admin := &http.Server{Handler: sim.AdminHandler(), ReadHeaderTimeout: 10 * time.Second}
	go admin.Serve(ln)
	defer admin.Close()
	ep.Admin = "http://" + ln.Addr().String()
	if err := json.NewEncoder(os.Stdout).Encode(ep); err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	return nil
}
