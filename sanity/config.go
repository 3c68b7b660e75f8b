// Package sanity runs the CSI community's conformance suite (csi-sanity)
// against the real plugin server, with real loop devices, mkfs and mounts.
// This file holds what every backend's suite configures the same way.
package sanity

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"

	"github.com/csi-libstorage/csi-libstorage/internal/wiring"
	"github.com/csi-libstorage/csi-libstorage/test/harness"
	"github.com/csi-libstorage/csi-libstorage/test/sim/simloop"
)

// Case is one configuration a backend's suite runs in.
type Case struct {
	Name   string
	Access string // "mount" or "block"
	Params map[string]string
	// Mutable are the mutable parameters the ModifyVolume specs create
	// and modify volumes with; they must be ones the backend can change.
	Mutable map[string]string
}

// Config returns the csi-sanity configuration of one case: built with
// sanity.NewTestConfig, so the idempotency repeats stay on, with the plugin
// creating and removing target paths and CheckPath set so that the
// "should remove target path" spec runs.
func Config(dir, sock string, c Case, size, expand int64) sanity.TestConfig {
	cfg := sanity.NewTestConfig()
	cfg.Address = "unix://" + sock
	base := filepath.Join(dir, strings.ReplaceAll(c.Name, " ", "-"))
	cfg.TargetPath = filepath.Join(base, "target")
	cfg.StagingPath = filepath.Join(base, "staging")
	cfg.TestVolumeSize = size
	cfg.TestVolumeExpandSize = expand
	cfg.TestVolumeAccessType = c.Access
	cfg.TestVolumeParameters = c.Params
	cfg.TestVolumeMutableParameters = c.Mutable
	cfg.CreateTargetDir = mkdir
	cfg.CreateStagingDir = mkdir
	cfg.RemoveTargetPath = os.RemoveAll
	cfg.RemoveStagingPath = os.RemoveAll
	cfg.CheckPath = checkPath
	return cfg
}

func mkdir(p string) (string, error) { return p, os.MkdirAll(p, 0o755) }

func checkPath(p string) (sanity.PathKind, error) {
	fi, err := os.Lstat(p)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return sanity.PathIsNotFound, nil
	case err != nil:
		return "", err
	case fi.IsDir():
		return sanity.PathIsDir, nil
	case fi.Mode().IsRegular():
		return sanity.PathIsFile, nil
	}
	return sanity.PathIsOther, nil
}

// Serve starts the plugin o describes and serves it until the test ends;
// the returned stop cancels it, checks that it stopped cleanly, then runs
// after (the suite's leak checks, which must see the plugin gone).
func Serve(t *testing.T, o wiring.Options, after func()) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p, err := wiring.New(ctx, o)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- p.Serve(ctx) }()
	return func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
		after()
	}
}

// Run runs csi-sanity once per case, with volumes of size bytes grown to
// expand bytes, within timeout.
func Run(t *testing.T, name, dir, sock string, cases []Case, size, expand int64, timeout time.Duration) {
	for _, c := range cases {
		sc := Config(dir, sock, c, size, expand)
		ginkgo.Context(c.Name, func() { sanity.GinkgoTest(&sc) })
	}
	gomega.RegisterFailHandler(ginkgo.Fail)
	suite, reporter := ginkgo.GinkgoConfiguration()
	suite.Timeout = timeout
	ginkgo.RunSpecs(t, name, suite, reporter)
}

// AssertNoDevices fails the test if a loop device over an image in
// imageDir, a device error of the simulator, or a mount below dir is left.
func AssertNoDevices(t *testing.T, dir, imageDir string, deviceErrs []error) {
	t.Helper()
	devs, err := simloop.BackedBy(imageDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	if len(devs) > 0 {
		t.Errorf("left behind: loop devices %v", devs)
	}
	for _, e := range deviceErrs {
		t.Errorf("device error: %v", e)
	}
	for _, m := range harness.MountsUnder(t, dir) {
		t.Errorf("mount left behind at %s", m)
	}
}
