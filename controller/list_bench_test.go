package controller

import (
	"context"
	"fmt"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/csi-libstorage/csi-libstorage/backends"
)

// memBackend is an in-memory backend holding n volumes, so the benchmarks
// below measure the controller's own ListVolumes work (filter, sort, page,
// build the response), not a backend's I/O.
type memBackend struct {
	backends.Backend // only the methods below are called
	vols             []*backends.Volume
}

func newMemBackend(n int) *memBackend {
	m := &memBackend{}
	for i := 0; i < n; i++ {
		m.vols = append(m.vols, &backends.Volume{
			ID:            fmt.Sprintf("%032x", i),
			Name:          fmt.Sprintf("pvc-%d", i),
			CapacityBytes: 1 << 30,
			Parameters:    map[string]string{"fsType": "ext4"},
			Modes:         []backends.AccessMode{backends.SingleNodeWriter},
			Attachments:   []backends.Attachment{{Node: "node-1", Mode: backends.SingleNodeWriter}},
		})
	}
	return m
}

func (m *memBackend) Name() string { return "mem" }

func (m *memBackend) Capabilities() backends.Capabilities {
	return backends.Capabilities{AttachRequired: true, Mount: true, Block: true}
}

func (m *memBackend) List(ctx context.Context) ([]*backends.Volume, error) {
	return append([]*backends.Volume(nil), m.vols...), nil
}

func benchService(b *testing.B, n int) *Service {
	set, err := backends.NewSet(newMemBackend(n))
	if err != nil {
		b.Fatal(err)
	}
	return New(set, Options{})
}

// walk lists every volume in pages of page (0: one unpaged call) and
// returns how many it saw.
func walk(b *testing.B, s *Service, page int32) int {
	token, seen := "", 0
	for {
		r, err := s.ListVolumes(context.Background(), &csi.ListVolumesRequest{MaxEntries: page, StartingToken: token})
		if err != nil {
			b.Fatal(err)
		}
		seen += len(r.GetEntries())
		if token = r.GetNextToken(); token == "" {
			return seen
		}
	}
}

// BenchmarkListVolumesUnpaged: one call returning every volume, as the
// Mesos storage provider makes every reconciliation.
func BenchmarkListVolumesUnpaged(b *testing.B) {
	for _, n := range []int{100, 2000, 10000} {
		b.Run(fmt.Sprintf("volumes=%d", n), func(b *testing.B) {
			s := benchService(b, n)
			b.ReportAllocs()
			for b.Loop() {
				if got := walk(b, s, 0); got != n {
					b.Fatalf("listed %d, want %d", got, n)
				}
			}
		})
	}
}

// BenchmarkListVolumesPagedWalk: a whole walk in pages of 100 (one op =
// n/100 calls). Every page re-lists and re-sorts all n volumes, so a walk
// costs O(n²/page).
func BenchmarkListVolumesPagedWalk(b *testing.B) {
	for _, n := range []int{100, 2000, 10000} {
		b.Run(fmt.Sprintf("volumes=%d", n), func(b *testing.B) {
			s := benchService(b, n)
			b.ReportAllocs()
			for b.Loop() {
				if got := walk(b, s, 100); got != n {
					b.Fatalf("listed %d, want %d", got, n)
				}
			}
		})
	}
}
