// Command ec2sim runs the stateful EC2 and instance-metadata test server of
// test/sim/ec2 as a process of its own: for trying the EBS backend
// locally without AWS, and for tests that must kill and restart the plugin
// while the "cloud" keeps its state. Attached volumes appear as real loop
// devices behind NVMe-style by-id links.
//
//	ec2sim --dir /var/tmp/ec2sim --instance i-0123456789abcdef0:us-east-1a
//
// It prints one JSON line with the EC2 endpoint and each instance's IMDS
// endpoint (and an admin endpoint that stops, starts and terminates
// instances: POST <admin>/instances/<id>/stop), serves until SIGTERM or
// SIGINT, then detaches every loop device it made.
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
	"strings"
	"syscall"
	"time"

	"github.com/csi-libstorage/csi-libstorage/test/sim/ec2"
)

type instances []ec2sim.Instance

func (i *instances) String() string { return fmt.Sprint(*i) }

func (i *instances) Set(v string) error {
	id, zone, ok := strings.Cut(v, ":")
	if !ok {
		return fmt.Errorf("want INSTANCE-ID:ZONE, got %q", v)
	}
	*i = append(*i, ec2sim.Instance{ID: id, AvailabilityZone: zone, RootDeviceName: "/dev/xvda"})
	return nil
}

// strictness collects --lag ACTION=DURATION and --throttle
// ACTION=BURST/PER-SECOND, which make the server as strict as EC2.
type strictness struct {
	lags      map[string]time.Duration
	throttles map[string][2]float64
}

type lagFlag struct{ s *strictness }

func (f lagFlag) String() string { return "" }

func (f lagFlag) Set(v string) error {
	action, d, ok := strings.Cut(v, "=")
	dur, err := time.ParseDuration(d)
	if !ok || err != nil || dur < 0 {
		return fmt.Errorf("want ACTION=DURATION (CreateVolume=2s), got %q", v)
	}
	f.s.lags[action] = dur
	return nil
}

type throttleFlag struct{ s *strictness }

func (f throttleFlag) String() string { return "" }

func (f throttleFlag) Set(v string) error {
	action, rate, ok := strings.Cut(v, "=")
	var burst, per float64
	if _, err := fmt.Sscanf(rate, "%g/%g", &burst, &per); !ok || err != nil || burst < 1 || per <= 0 {
		return fmt.Errorf("want ACTION=BURST/PER-SECOND (DescribeVolumes=100/20), got %q", v)
	}
	f.s.throttles[action] = [2]float64{burst, per}
	return nil
}

// Endpoints is the line the command prints.
type Endpoints struct {
	EC2     string            `json:"ec2"`
	IMDS    map[string]string `json:"imds"`
	Images  string            `json:"images"`
	ByIDDir map[string]string `json:"byIdDir"`
	// Admin serves ec2sim.Server.AdminHandler: stop, start and terminate
	// instances from a test.
	Admin string `json:"admin"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "ec2sim:", err)
		os.Exit(1)
	}
}

func run() error {
	var insts instances
	dir := flag.String("dir", "/var/tmp/ec2sim", "where volume images and by-id links live")
	region := flag.String("region", "us-east-1", "the simulated region")
	delay := flag.Duration("state-delay", 30*time.Millisecond, "how long each state transition takes")
	flag.Var(&insts, "instance", "an instance, INSTANCE-ID:ZONE (repeatable)")
	strict := &strictness{lags: map[string]time.Duration{}, throttles: map[string][2]float64{}}
	flag.Var(lagFlag{strict}, "lag", "ACTION=DURATION: the effect of CreateVolume or AttachVolume stays invisible to describe calls that long (repeatable)")
	flag.Var(throttleFlag{strict}, "throttle", "ACTION=BURST/PER-SECOND: a token bucket for the API, answering RequestLimitExceeded when empty (repeatable)")
	flag.Parse()
	if len(insts) == 0 {
		insts = instances{{ID: "i-0123456789abcdef0", AvailabilityZone: *region + "a", RootDeviceName: "/dev/xvda"}}
	}
	loops := &ec2sim.LoopDevices{ImageDir: filepath.Join(*dir, "images"), ByIDDir: filepath.Join(*dir, "by-id"), PerInstance: true}
	for _, d := range []string{loops.ImageDir, loops.ByIDDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	sim, err := ec2sim.New(ec2sim.Options{Region: *region, Instances: insts, StateDelay: *delay, Devices: loops})
	if err != nil {
		return err
	}
	defer sim.Close()
	for action, d := range strict.lags {
		sim.SetLag(action, d)
	}
	for action, t := range strict.throttles {
		sim.Throttle(action, int(t[0]), t[1])
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	admin := &http.Server{Handler: sim.AdminHandler(), ReadHeaderTimeout: 10 * time.Second}
	go admin.Serve(ln)
	defer admin.Close()
	ep := Endpoints{EC2: sim.Start(), IMDS: map[string]string{}, Images: loops.ImageDir, ByIDDir: map[string]string{}, Admin: "http://" + ln.Addr().String()}
	for _, i := range insts {
		ep.IMDS[i.ID] = sim.IMDSURL(i.ID)
		ep.ByIDDir[i.ID] = loops.LinkDir(i.ID)
	}
	if err := json.NewEncoder(os.Stdout).Encode(ep); err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	return nil
}
