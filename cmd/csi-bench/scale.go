package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"

	"github.com/csi-libstorage/csi-libstorage/internal/loop"
)

// fill grows the pool to n volumes (of 16 MiB) with 16 clients; have is
// how many it holds already.
func (h *harness) fill(in *instance, have, n int) (int, error) {
	if n <= have {
		return have, nil
	}
	err := parallel(n-have, 16, func(i int) error {
		_, err := in.create(fmt.Sprintf("fill-%07d", have+i), 16*mib)
		return err
	})
	return n, err
}

// createRate times k sequential creates from one client and returns the
// rate, each call's latency and the new ids.
func (h *harness) createRate(in *instance, label string, k int) (float64, []time.Duration, []string, error) {
	lat := make([]time.Duration, 0, k)
	var ids []string
	start := time.Now()
	for i := 0; i < k; i++ {
		t := time.Now()
		id, err := in.create(fmt.Sprintf("rate-%s-%d", label, i), 16*mib)
		if err != nil {
			return 0, nil, nil, err
		}
		lat = append(lat, time.Since(t))
		ids = append(ids, id)
	}
	return float64(k) / time.Since(start).Seconds(), lat, ids, nil
}

// list calls ListVolumes until the last page and returns the entries and
// the number of calls.
func (in *instance) list(pageSize int32) (int, int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	token, n, calls := "", 0, 0
	for {
		r, err := in.ctrl.ListVolumes(ctx, &csi.ListVolumesRequest{MaxEntries: pageSize, StartingToken: token})
		calls++
		if err != nil {
			return n, calls, fmt.Errorf("ListVolumes: %w", err)
		}
		n += len(r.GetEntries())
		if token = r.GetNextToken(); token == "" {
			return n, calls, nil
		}
	}
}

func (h *harness) timedList(in *instance, page int32, repeat, want int) (time.Duration, int, error) {
	var d []time.Duration
	calls := 0
	for i := 0; i < repeat; i++ {
		t := time.Now()
		n, c, err := in.list(page)
		if err != nil {
			return 0, 0, err
		}
		d = append(d, time.Since(t))
		calls = c
		if n != want {
			return 0, 0, fmt.Errorf("ListVolumes walk returned %d volumes, want %d", n, want)
		}
	}
	return median(d), calls, nil
}

// scale is section 3: create rate as the pool grows, ListVolumes, start-up
// time and resident memory with thousands of volumes.
func (h *harness) scale() error {
	fsDir, undo, err := h.poolFS()
	if err != nil {
		return err
	}
	defer undo()
	pool := filepath.Join(fsDir, "pool-scale")
	in, err := h.start(pool)
	if err != nil {
		return err
	}
	defer func() { h.stop(in) }()
	empty, err := h.start(filepath.Join(fsDir, "pool-empty"))
	if err != nil {
		return err
	}
	defer func() { h.stop(empty) }()

	// Start-up time with startVolumes in the pool.
	have, err := h.fill(in, 0, h.startVolumes)
	if err != nil {
		return err
	}
	var ups, downs []time.Duration
	for i := 0; i < 3; i++ {
		d, err := h.stop(in)
		if err != nil {
			return fmt.Errorf("stop: %w", err)
		}
		downs = append(downs, d)
		if in, err = h.start(pool); err != nil {
			return err
		}
		ups = append(ups, time.Since(in.started))
	}
	h.rep.add("scale", fmt.Sprintf("start-up to Probe ready, %d volumes", have), ms(median(ups)), "< 1 s: "+verdict(median(ups) < time.Second),
		fmt.Sprintf("median of 3 restarts: exec of the binary until the socket accepts and Probe answers ready (socket polled every 1 ms); SIGTERM→exit took %s", ms(median(downs))))

	// Create rate into an empty pool and into one of listVolumes, in
	// interleaved blocks (empty, full, empty, …) on two plugins; the empty
	// pool's volumes are deleted after each block (untimed).
	if have, err = h.fill(in, have, h.listVolumes); err != nil {
		return err
	}
	base := have
	per := max(1, h.rateCreates/h.rateBlocks)
	var r0s, r1s []float64
	var lat0, lat1 []time.Duration
	for blk := 0; blk < h.rateBlocks; blk++ {
		r, lat, ids, err := h.createRate(empty, fmt.Sprintf("empty-%d", blk), per)
		if err != nil {
			return err
		}
		r0s, lat0 = append(r0s, r), append(lat0, lat...)
		if err := parallel(len(ids), 16, func(i int) error { return empty.delete(ids[i]) }); err != nil {
			return err
		}
		if r, lat, _, err = h.createRate(in, fmt.Sprintf("full-%d", blk), per); err != nil {
			return err
		}
		r1s, lat1 = append(r1s, r), append(lat1, lat...)
		have += per
	}
	r0, r1 := medianF(r0s), medianF(r1s)
	q := r1 / r0
	h.rep.add("scale", "create rate, empty pool", fmt.Sprintf("%.0f/s (p50 %s)", r0, ms(median(lat0))), "",
		fmt.Sprintf("%d blocks of %d sequential CreateVolume (16 MiB) from 1 client into an empty pool, interleaved with the next row; median block (blocks: %s/s)", h.rateBlocks, per, fmtRates(r0s)))
	h.rep.add("scale", fmt.Sprintf("create rate, %d existing volumes", base), fmt.Sprintf("%.0f/s (p50 %s) = %.2f× empty", r1, ms(median(lat1)), q), "≥ 0.90×: "+verdict(q >= 0.9),
		fmt.Sprintf("%d blocks of %d sequential CreateVolume (16 MiB) from 1 client into a pool of %d..%d; median block (blocks: %s/s)", h.rateBlocks, per, base, have, fmtRates(r1s)))

	// Resident memory with memVolumes in the pool, after one listing of
	// them and before the repeated listings below, whose garbage the
	// collector returns to the kernel only lazily.
	if have, err = h.fill(in, have, h.memVolumes); err != nil {
		return err
	}
	d, _, err := h.timedList(in, 0, 1, have)
	if err != nil {
		return err
	}
	h.rep.add("scale", fmt.Sprintf("ListVolumes unpaged, %d volumes, first call", have), ms(d), "", "one unpaged ListVolumes call after the creates above")
	st := procStatus(in.pid(), "VmRSS", "VmHWM", "RssAnon", "RssFile")
	mib := func(k string) float64 { return float64(st[k]) / 1024 }
	rss := mib("VmRSS")
	note := ""
	if h.inProcess {
		note = " (in-process: includes the harness)"
	}
	h.rep.add("scale", fmt.Sprintf("plugin memory with %d volumes + list", have),
		fmt.Sprintf("VmRSS %.1f MiB (anonymous %.1f, file-backed %.1f), VmHWM %.1f MiB", rss, mib("RssAnon"), mib("RssFile"), mib("VmHWM")),
		"< 50 MiB: "+verdict(rss < 50),
		"/proc/<pid>/status of the plugin (restarted on the full pool for the start-up figure, then the creates above) after one unpaged ListVolumes; file-backed is the binary's pages that were touched; VmHWM includes the garbage of the creates"+note)

	d, _, err = h.timedList(in, 0, 5, have)
	if err != nil {
		return err
	}
	h.rep.add("scale", fmt.Sprintf("ListVolumes unpaged, %d volumes", have), ms(d), "",
		"median of 5 unpaged ListVolumes calls (every volume's metadata file is opened each call; unchanged ones are served from the cache)")
	d, calls, err := h.timedList(in, 100, 3, have)
	if err != nil {
		return err
	}
	h.rep.add("scale", fmt.Sprintf("ListVolumes walk in pages of 100, %d volumes", have), fmt.Sprintf("%s per walk (%s per page)", ms(d), ms(d/time.Duration(calls))), "",
		fmt.Sprintf("median of 3 walks of %d calls with max_entries=100, following next_token", calls))

	return nil
}

// restart is section 3's node restart: stagedVolumes staged volumes,
// SIGTERM, restart, time to Probe ready and to unstage them all.
func (h *harness) restart() error {
	pool := filepath.Join(h.root, "pool-restart")
	in, err := h.start(pool)
	if err != nil {
		return err
	}
	defer func() { h.stop(in) }()
	n := h.stagedVolumes
	ids := make([]string, n)
	pcs := make([]map[string]string, n)
	staging := func(i int) string { return filepath.Join(h.root, "mnt", "restart", fmt.Sprint(i), "staging") }
	t := time.Now()
	if err := parallel(n, 8, func(i int) (err error) {
		if ids[i], err = in.create(fmt.Sprintf("staged-%d", i), 16*mib); err != nil {
			return err
		}
		if pcs[i], err = in.publish(ids[i]); err != nil {
			return err
		}
		return in.stage(ids[i], pcs[i], staging(i))
	}); err != nil {
		return err
	}
	setup := time.Since(t)
	down, err := h.stop(in)
	if err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	t0 := time.Now()
	if in, err = h.start(pool); err != nil {
		return err
	}
	ready := time.Since(in.started)
	t1 := time.Now()
	if err := parallel(n, 16, func(i int) error { return in.unstage(ids[i], staging(i)) }); err != nil {
		return err
	}
	all := time.Since(t0)
	unstage := time.Since(t1)
	left := 0
	devs, _ := loop.List()
	for _, d := range devs {
		if strings.HasPrefix(d.BackingFile, pool+"/") {
			left++
		}
	}
	mounts := len(mountsBelow(filepath.Join(h.root, "mnt", "restart")))
	h.rep.add("restart", fmt.Sprintf("%d staged: restart to Probe ready", n), ms(ready), "",
		fmt.Sprintf("%d volumes created+published+staged (8 clients, %s); SIGTERM (exit in %s); exec until Probe answers ready", n, ms(setup.Round(time.Millisecond)), ms(down)))
	h.rep.add("restart", fmt.Sprintf("%d staged: restart until all unstaged", n), fmt.Sprintf("%s (unstage phase %s)", ms(all), ms(unstage)), "",
		fmt.Sprintf("exec of the new plugin until NodeUnstage of all %d returned (16 clients); afterwards %d loop devices and %d mounts of theirs remained", n, left, mounts))
	return parallel(n, 16, func(i int) error {
		if err := in.unpublish(ids[i]); err != nil {
			return err
		}
		return in.delete(ids[i])
	})
}

// poolFS makes the filesystem the scale pools live on: ext4 in a sparse
// image on a loop device (direct I/O), big enough to provision every
// volume of the section. The file backend counts what sparse images have
// not allocated yet against free space, so 10,000 volumes of 16 MiB need
// 160 GiB of free space, more than a test disk may have; the image
// allocates only the metadata actually written.
func (h *harness) poolFS() (string, func(), error) {
	vols := int64(h.memVolumes + h.rateCreates + 200)
	size := vols*16*mib*5/4 + 4*gib
	img := filepath.Join(h.root, "poolfs.img")
	dir := filepath.Join(h.root, "poolfs")
	f, err := os.Create(img)
	if err != nil {
		return "", nil, err
	}
	err = f.Truncate(size)
	f.Close()
	if err != nil {
		return "", nil, err
	}
	dev, err := run("losetup", "--direct-io=on", "--find", "--show", img)
	if err != nil {
		return "", nil, err
	}
	undo := func() {
		unix.Unmount(dir, 0)
		run("losetup", "-d", dev)
		os.Remove(img)
	}
	inodes := fmt.Sprint(max(65536, vols*8))
	if _, err := run("mkfs.ext4", "-q", "-N", inodes, "-E", "lazy_itable_init=1,lazy_journal_init=1", dev); err != nil {
		undo()
		return "", nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		undo()
		return "", nil, err
	}
	if _, err := run("mount", "-t", "ext4", dev, dir); err != nil {
		undo()
		return "", nil, err
	}
	h.poolFSDesc = fmt.Sprintf("ext4 in a sparse %d GiB image on %s (direct I/O) below %s", size/gib, dev, h.base)
	return dir, undo, nil
}
