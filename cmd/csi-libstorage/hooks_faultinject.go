//go:build faultinject

package main

import (
	"os"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/backends/ebs"
	"github.com/csi-libstorage/csi-libstorage/internal/config"
	"github.com/csi-libstorage/csi-libstorage/internal/wiring"
	"github.com/csi-libstorage/csi-libstorage/test/sim/ec2"
)

// testFactories, in test builds only, lets the fault matrix run the EBS
// backend against cmd/ec2sim: the identity check reads the simulated NVMe
// serial of the test server's loop devices (CSI_LIBSTORAGE_TEST_EC2SIM_IMAGES
// names their image directory) instead of sysfs.
func testFactories() map[string]wiring.Factory {
	images := os.Getenv("CSI_LIBSTORAGE_TEST_EC2SIM_IMAGES")
	if images == "" {
		return nil
	}
	loops := &ec2sim.LoopDevices{ImageDir: images}
	return map[string]wiring.Factory{ebs.Type: func(e config.Entry, o wiring.BackendOptions) (backends.Backend, error) {
		var c ebs.Config
		if err := e.Decode(&c); err != nil {
			return nil, err
		}
		c.Name = e.Name
		return ebs.New(c, ebs.Options{NodeID: o.NodeID, Logger: o.Logger, Serial: loops.Serial})
	}}
}
