package main

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// row is one figure of the report.
type row struct {
	section, figure, value, target, how string
}

// report collects the figures and writes them as a markdown table.
type report struct {
	rows []row
}

func (r *report) add(section, figure, value, target, how string) {
	r.rows = append(r.rows, row{section, figure, value, target, how})
	fmt.Printf("%-10s %-52s %-26s %-22s %s\n", section, figure, value, target, how)
}

// Markers around the generated part of BENCHMARKS.md; text outside them
// (the analysis) is kept when the file is rewritten.
const (
	beginMark = "<!-- csi-bench: generated, do not edit between these markers -->"
	endMark   = "<!-- csi-bench: end of generated part -->"
)

func (r *report) markdown(h *harness, elapsed time.Duration) string {
	var b strings.Builder
	fmt.Fprintln(&b, beginMark)
	fmt.Fprintf(&b, "## Results (%s)\n\n", h.profileName())
	fmt.Fprintf(&b, "- Date: %s\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "- Machine: %s\n", machine())
	fmt.Fprintf(&b, "- Go: %s (%s/%s)\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(&b, "- Command: `%s`\n", h.command)
	fmt.Fprintf(&b, "- Plugin: %s, log level warn, pool on %s (%s), metadata fsync'd as in production\n", h.pluginDesc(), h.base, fsType(h.base))
	if h.poolFSDesc != "" {
		fmt.Fprintf(&b, "- Scale pools: %s, because the file backend refuses to provision more than the free space of the pool's filesystem and 10,000 × 16 MiB exceeds this disk's\n", h.poolFSDesc)
	}
	fmt.Fprintf(&b, "- Wall time of the run: %s; load average (1/5/15 min) at start %s, at end %s (other work on the machine shows up as noise, mostly in fsync-bound p99s)\n\n",
		elapsed.Round(time.Second), h.loadStart, loadAvg())
	fmt.Fprintln(&b, "| Section | Figure | Value | Target | How it was measured |")
	fmt.Fprintln(&b, "|---|---|---|---|---|")
	for _, x := range r.rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", x.section, x.figure, x.value, x.target, strings.ReplaceAll(x.how, "|", `\|`))
	}
	fmt.Fprintln(&b)
	if h.goBench != "" {
		if raw, err := os.ReadFile(h.goBench); err == nil {
			fmt.Fprintln(&b, "### In-process hot code (`go test -bench`, same run)")
			fmt.Fprintln(&b)
			fmt.Fprintln(&b, "```")
			for _, l := range strings.Split(string(raw), "\n") {
				if strings.HasPrefix(l, "Benchmark") || strings.HasPrefix(l, "pkg:") {
					fmt.Fprintln(&b, strings.TrimRight(l, " \t"))
				}
			}
			fmt.Fprintln(&b, "```")
			fmt.Fprintln(&b)
		}
	}
	fmt.Fprintln(&b, endMark)
	return b.String()
}

// write replaces the generated part of path, keeping the rest.
func (r *report) write(path string, h *harness, elapsed time.Duration) error {
	gen := r.markdown(h, elapsed)
	old, err := os.ReadFile(path)
	var out string
	switch {
	case err == nil && bytes.Contains(old, []byte(beginMark)) && bytes.Contains(old, []byte(endMark)):
		s := string(old)
		i := strings.Index(s, beginMark)
		j := strings.Index(s, endMark) + len(endMark)
		out = s[:i] + strings.TrimSuffix(gen, "\n") + s[j:]
	default:
		out = "# Benchmarks\n\n" +
			"`make bench` (about 2 minutes) and `make bench-quick` (under a minute) run `cmd/csi-bench`: it starts the built\n" +
			"plugin over its unix socket on a pool under /var/tmp and compares it with the raw Linux primitives in the same run.\n" +
			"The part between the markers is rewritten by every run; the analysis below it is kept.\n\n" + gen
	}
	return os.WriteFile(path, []byte(out), 0o644)
}

func machine() string {
	var u unix.Utsname
	unix.Uname(&u)
	kernel := unix.ByteSliceToString(u.Release[:])
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := "?"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "MemTotal:") {
				var kb int64
				fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(l, "MemTotal:")), "%d", &kb)
				mem = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
			}
		}
	}
	return fmt.Sprintf("nproc %d, memory %s, kernel %s, CPU %q", runtime.NumCPU(), mem, kernel, model)
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func fsType(path string) string {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return "?"
	}
	switch st.Type {
	case unix.EXT4_SUPER_MAGIC:
		return "ext4"
	case unix.XFS_SUPER_MAGIC:
		return "xfs"
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case unix.BTRFS_SUPER_MAGIC:
		return "btrfs"
	}
	return fmt.Sprintf("fs magic %#x", st.Type)
}

// Statistics.

func median(d []time.Duration) time.Duration { return pct(d, 50) }

// pct is the nearest-rank percentile.
func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	k := int(float64(len(s))*p/100+0.999999) - 1
	return s[max(0, min(k, len(s)-1))]
}

func ms(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d >= 100*time.Millisecond:
		return fmt.Sprintf("%.0f ms", float64(d)/1e6)
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/1e6)
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.0f µs", float64(d)/1e3)
}

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}
