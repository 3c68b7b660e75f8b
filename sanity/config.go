// Package sanity runs the CSI community's conformance suite (csi-sanity)
// against the real plugin server, with real loop devices, mkfs and mounts.
// This file holds what every backend's suite configures the same way.
package sanity

import (
	"errors"
	"os"
	"path/filepath"
	"strings"

	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
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
