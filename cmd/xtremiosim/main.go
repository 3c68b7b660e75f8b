// Command xtremiosim runs the stateful XtremIO XMS test server of
// test/sim/xtremio as a process of its own: for trying the XtremIO backend
// locally, and for tests that must kill and restart the plugin while the
// "storage" keeps its state. Mapped volumes appear as real loop devices
// behind wwn-0x<naa> links, with the fake sysfs WWIDs the node checks, one
// directory of each per initiator group.
//
//	xtremiosim --dir /var/tmp/xtremiosim --group node1
//
// It prints one JSON line with the XMS URL, the images directory and each
// group's by-id and sysfs directories, serves until SIGTERM or SIGINT, then
// detaches every loop device it made.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	ec2sim "github.com/csi-libstorage/csi-libstorage/test/sim/ec2"
	xtremiosim "github.com/csi-libstorage/csi-libstorage/test/sim/xtremio"
)

// Endpoints is the line the command prints.
type Endpoints struct {
	XMS     string            `json:"xms"`
	Images  string            `json:"images"`
	ByIDDir map[string]string `json:"byIdDir"`
	Sysfs   map[string]string `json:"sysfs"`
}

type groups []string

func (g *groups) String() string     { return fmt.Sprint(*g) }
func (g *groups) Set(v string) error { *g = append(*g, v); return nil }

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "xtremiosim:", err)
		os.Exit(1)
	}
}

func run() error {
	var gs groups
	dir := flag.String("dir", "/var/tmp/xtremiosim", "where volume images, by-id links and the fake sysfs live")
	user := flag.String("user", "admin", "the XMS user")
	passwordEnv := flag.String("password-env", "XTREMIOSIM_PASSWORD", "the environment variable holding the XMS password")
	flag.Var(&gs, "group", "the initiator group (node) whose devices and sysfs are made (repeatable)")
	flag.Parse()
	password := os.Getenv(*passwordEnv)
	if password == "" {
		return fmt.Errorf("set %s to the XMS password", *passwordEnv)
	}
	if len(gs) == 0 {
		gs = groups{"node1"}
	}
	loops := &xtremiosim.LoopDevices{
		Loops:    &ec2sim.LoopDevices{ImageDir: filepath.Join(*dir, "images"), ByIDDir: filepath.Join(*dir, "loop-links"), PerInstance: true},
		ByIDDir:  filepath.Join(*dir, "by-id"),
		SysfsDir: filepath.Join(*dir, "sys"),
	}
	defer loops.Close()
	ep := Endpoints{Images: loops.Loops.ImageDir, ByIDDir: map[string]string{}, Sysfs: map[string]string{}}
	for _, g := range gs {
		root, err := loops.SysfsRoot(g)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(loops.LinkDir(g), 0o755); err != nil {
			return err
		}
		ep.ByIDDir[g], ep.Sysfs[g] = loops.LinkDir(g), root
	}
	if err := os.MkdirAll(loops.Loops.ImageDir, 0o700); err != nil {
		return err
	}
	sim := xtremiosim.New(xtremiosim.Options{User: *user, Password: password, Devices: loops})
	ep.XMS = sim.Start()
	defer sim.Close()
	if err := json.NewEncoder(os.Stdout).Encode(ep); err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	return nil
}
