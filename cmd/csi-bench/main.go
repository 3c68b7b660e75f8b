// Command csi-bench measures csi-libstorage against the raw Linux
// primitives it wraps, and at scale. It starts the built plugin over its
// real unix socket on a pool under /var/tmp, runs the node path side by
// side with losetup/mkfs/mount run directly (interleaved, trial by trial),
// drives the controller with concurrent clients, grows the pool to
// thousands of volumes, and prints one table, also written to
// BENCHMARKS.md. Every mount and loop device it creates is removed at the
// end, on error and on SIGINT/SIGTERM.
//
//	csi-bench --plugin bin/csi-libstorage [--quick] [--out BENCHMARKS.md]
//	csi-bench --cpuprofile cpu.out --sections control   # plugin in-process, profiled
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"
)

// sizes are the knobs that differ between make bench and make bench-quick.
type sizes struct {
	trials        int           // node path trials per side
	ctrlDuration  time.Duration // per control-plane run
	ctrlReps      int           // runs per control-plane configuration
	rateBlocks    int           // interleaved blocks per create rate
	rateCreates   int           // creates timed for each create rate
	listVolumes   int           // pool size for the ListVolumes and create-rate figures
	startVolumes  int           // pool size for the start-up time
	memVolumes    int           // pool size for resident memory
	stagedVolumes int           // volumes staged before the restart
	vsVolumes     int           // volumes per create or delete phase against the hostpath baseline
	vsReps        int           // interleaved repeats of those phases
}

var (
	full  = sizes{trials: 31, ctrlDuration: 4 * time.Second, ctrlReps: 3, rateBlocks: 5, rateCreates: 500, listVolumes: 10000, startVolumes: 10000, memVolumes: 10000, stagedVolumes: 100, vsVolumes: 400, vsReps: 5}
	quick = sizes{trials: 5, ctrlDuration: 1 * time.Second, ctrlReps: 1, rateBlocks: 2, rateCreates: 100, listVolumes: 1000, startVolumes: 1000, memVolumes: 1000, stagedVolumes: 20, vsVolumes: 200, vsReps: 3}
)

type harness struct {
	sizes
	logSeq     int // numbers the log files of the processes started
	quick      bool
	base       string // /var/tmp
	root       string // base/csi-bench-<pid>
	pluginBin  string
	inProcess  bool
	command    string
	goBench    string
	loadStart  string
	poolFSDesc string
	pids       map[int]bool
	rep        report
}

func main() {
	if runHostpathIfAsked() {
		return
	}
	h := &harness{pids: map[int]bool{}}
	flag.BoolVar(&h.quick, "quick", false, "smaller trials and pools (make bench-quick)")
	flag.StringVar(&h.pluginBin, "plugin", "bin/csi-libstorage", "the built plugin binary")
	flag.StringVar(&h.base, "dir", "/var/tmp", "where the working directory (pools, images, mounts) is made")
	out := flag.String("out", "", "also write the table into this markdown file (kept text outside the generated markers)")
	sections := flag.String("sections", "node,control,scale,restart,failover", "sections to run, comma-separated")
	cpuprofile := flag.String("cpuprofile", "", "run the plugin in this process (internal/wiring) and write a CPU profile of the run here")
	inproc := flag.Bool("inprocess", false, "run the plugin in this process instead of the binary")
	trials := flag.Int("trials", 0, "node path trials per side (default 31, quick 5)")
	flag.StringVar(&h.goBench, "gobench", "", "output of go test -bench to include in the report")
	cmdLabel := flag.String("command-label", "", "how the run was started, for the report (default: the arguments)")
	flag.Parse()

	h.sizes = full
	if h.quick {
		h.sizes = quick
	}
	if *trials > 0 {
		h.trials = *trials
	}
	h.inProcess = *inproc || *cpuprofile != ""
	h.command = *cmdLabel
	if h.command == "" {
		h.command = strings.Join(os.Args, " ")
	}
	if !h.inProcess {
		abs, err := filepath.Abs(h.pluginBin)
		if err == nil {
			h.pluginBin = abs
		}
		if _, err := os.Stat(h.pluginBin); err != nil {
			fatal(fmt.Errorf("plugin binary: %w (run make build, or pass --plugin)", err))
		}
	}
	if os.Geteuid() != 0 {
		fatal(fmt.Errorf("loop devices and mounts need root"))
	}
	cleanStale(h.base)
	h.root = filepath.Join(h.base, fmt.Sprintf("%s%d", rootPrefix, os.Getpid()))
	if err := os.MkdirAll(h.root, 0o700); err != nil {
		fatal(err)
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sig
		fmt.Fprintf(os.Stderr, "csi-bench: %v: cleaning up\n", s)
		h.cleanup()
		os.Exit(2)
	}()

	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fatal(err)
		}
		pprof.StartCPUProfile(f)
		defer f.Close()
		defer pprof.StopCPUProfile()
	}

	start := time.Now()
	h.loadStart = loadAvg()
	fmt.Printf("csi-bench: %s; %s; working in %s\n", h.profileName(), machine(), h.root)
	fmt.Printf("%-10s %-52s %-26s %-22s %s\n", "SECTION", "FIGURE", "VALUE", "TARGET", "HOW")
	err := h.run(strings.Split(*sections, ","))
	m, l := h.cleanup()
	left := len(mountsBelow(h.root))
	h.rep.add("cleanup", "mounts / loop devices left by the run", fmt.Sprintf("%d / %d (after cleanup: %d mounts)", m, l, left), "0: "+verdict(m+l+left == 0),
		"mounts below the work dir and loop devices backed by files in it, found once all plugins had stopped; the harness removes any it finds")
	if err != nil {
		pprof.StopCPUProfile()
		fatal(err)
	}
	if *out != "" {
		if err := h.rep.write(*out, h, time.Since(start)); err != nil {
			fatal(err)
		}
		fmt.Printf("csi-bench: wrote %s (%s)\n", *out, time.Since(start).Round(time.Second))
	}
}

func (h *harness) run(sections []string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	for _, s := range sections {
		var f func() error
		switch strings.TrimSpace(s) {
		case "node":
			f = h.nodePath
		case "control":
			f = h.controlPlane
		case "scale":
			f = h.scale
		case "restart":
			f = h.restart
		case "failover":
			f = h.failover
		case "":
			continue
		default:
			return fmt.Errorf("unknown section %q", s)
		}
		if err := f(); err != nil {
			return fmt.Errorf("section %s: %w", s, err)
		}
	}
	return nil
}

func (h *harness) profileName() string {
	if h.quick {
		return "make bench-quick"
	}
	return "make bench"
}

func (h *harness) pluginDesc() string {
	if h.inProcess {
		return "in-process (internal/wiring, for profiling)"
	}
	return "built binary " + filepath.Base(h.pluginBin) + " over its unix socket"
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "csi-bench:", err)
	os.Exit(1)
}
