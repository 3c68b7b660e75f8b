package file

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/csi-libstorage/csi-libstorage/backends"
)

// benchPool opens a pool on the disk under /var/tmp (not tmpfs), so the
// fsyncs cost what they cost in production.
func benchPool(b *testing.B) *Backend {
	dir, err := os.MkdirTemp("/var/tmp", "csi-file-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	p, err := New(Config{Name: "local", Dir: dir}, Options{NodeID: "bench-node"})
	if err != nil {
		b.Fatal(err)
	}
	return p
}

func benchReq(name string) backends.CreateRequest {
	return backends.CreateRequest{
		Name:          name,
		RequiredBytes: 16 << 20,
		Parameters:    map[string]string{"fsType": "ext4"},
		Modes:         []backends.AccessMode{backends.SingleNodeWriter},
	}
}

// BenchmarkCreateDelete: one CreateVolume and one DeleteVolume of the file
// backend, with the metadata made durable as in production.
func BenchmarkCreateDelete(b *testing.B) {
	p := benchPool(b)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		v, err := p.Create(ctx, benchReq(fmt.Sprintf("vol-%d", i)))
		if err != nil {
			b.Fatal(err)
		}
		if err := p.Delete(ctx, v.ID); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkCreateDeleteParallel: the same from concurrent goroutines on
// distinct names.
func BenchmarkCreateDeleteParallel(b *testing.B) {
	p := benchPool(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(8)
	var seq = make(chan int, 1)
	seq <- 0
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := <-seq
			seq <- n + 1
			v, err := p.Create(ctx, benchReq(fmt.Sprintf("vol-%d", n)))
			if err != nil {
				b.Error(err)
				return
			}
			if err := p.Delete(ctx, v.ID); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkList: List of a pool of n volumes, which reads and decodes
// every meta.json; ListVolumes pays it on every call, paged or not.
func BenchmarkList(b *testing.B) {
	for _, n := range []int{100, 2000} {
		b.Run(fmt.Sprintf("volumes=%d", n), func(b *testing.B) {
			p := benchPool(b)
			ctx := context.Background()
			for i := 0; i < n; i++ {
				if _, err := p.Create(ctx, benchReq(fmt.Sprintf("vol-%d", i))); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			for b.Loop() {
				vols, err := p.List(ctx)
				if err != nil || len(vols) != n {
					b.Fatalf("List: %d volumes, %v", len(vols), err)
				}
			}
		})
	}
}
