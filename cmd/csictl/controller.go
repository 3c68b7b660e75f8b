package main

import (
	"flag"
	"sort"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

func setupControllerPublish(fs *flag.FlagSet) action {
	nodeID := fs.String("node", "", "`NODE` ID to publish to (required; see \"node info\")")
	readonly := fs.Bool("readonly", false, "publish read-only")
	caps := addCapFlags(fs)
	vctx := newKV(fs, "context", "volume context `KEY=VALUE` from CreateVolume (repeatable)")
	secrets := newSecrets(fs)
	return func(c *client, args []string) error {
		if *nodeID == "" {
			return usagef("--node is required")
		}
		vc, err := caps.capability()
		if err != nil {
			return err
		}
		resp, err := invoke(c, "ControllerPublishVolume", c.ctrl.ControllerPublishVolume,
			&csi.ControllerPublishVolumeRequest{
				VolumeId:         args[0],
				NodeId:           *nodeID,
				VolumeCapability: vc,
				Readonly:         *readonly,
				VolumeContext:    vctx.m,
				Secrets:          secrets.m,
			})
		if err != nil {
			return err
		}
		return c.emit(resp, func(t *table) {
			pc := resp.GetPublishContext()
			if len(pc) == 0 {
				t.row("(empty publish context)")
				return
			}
			keys := make([]string, 0, len(pc))
			for k := range pc {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			t.row("PUBLISH CONTEXT", "VALUE")
			for _, k := range keys {
				t.row(k, pc[k])
			}
		})
	}
}

func setupControllerUnpublish(fs *flag.FlagSet) action {
	nodeID := fs.String("node", "", "`NODE` ID to unpublish from (required)")
	secrets := newSecrets(fs)
	return func(c *client, args []string) error {
		if *nodeID == "" {
			return usagef("--node is required")
		}
		resp, err := invoke(c, "ControllerUnpublishVolume", c.ctrl.ControllerUnpublishVolume,
			&csi.ControllerUnpublishVolumeRequest{VolumeId: args[0], NodeId: *nodeID, Secrets: secrets.m})
		if err != nil {
			return err
		}
		return c.emit(resp, func(t *table) { t.row("unpublished volume " + args[0] + " from node " + *nodeID) })
	}
}
