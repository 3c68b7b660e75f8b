package main

import (
	"flag"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

func setupNodeStage(fs *flag.FlagSet) action {
	staging := fs.String("staging", "", "staging target `PATH` (required)")
	caps := addCapFlags(fs)
	pctx := newKV(fs, "publish-context", "publish context `KEY=VALUE` from controller publish (repeatable)")
	vctx := newKV(fs, "context", "volume context `KEY=VALUE` from CreateVolume (repeatable)")
	secrets := newSecrets(fs)
	return func(c *client, args []string) error {
		if *staging == "" {
			return usagef("--staging is required")
		}
		vc, err := caps.capability()
		if err != nil {
			return err
		}
		resp, err := invoke(c, "NodeStageVolume", c.node.NodeStageVolume, &csi.NodeStageVolumeRequest{
			VolumeId:          args[0],
			PublishContext:    pctx.m,
			StagingTargetPath: *staging,
			VolumeCapability:  vc,
			Secrets:           secrets.m,
			VolumeContext:     vctx.m,
		})
		if err != nil {
			return err
		}
		return c.emit(resp, func(t *table) { t.row("staged volume " + args[0] + " at " + *staging) })
	}
}

func setupNodePublish(fs *flag.FlagSet) action {
	target := fs.String("target", "", "target `PATH` (required)")
	staging := fs.String("staging", "", "staging target `PATH` the volume was staged at")
	readonly := fs.Bool("readonly", false, "publish read-only")
	caps := addCapFlags(fs)
	pctx := newKV(fs, "publish-context", "publish context `KEY=VALUE` from controller publish (repeatable)")
	vctx := newKV(fs, "context", "volume context `KEY=VALUE` from CreateVolume (repeatable)")
	secrets := newSecrets(fs)
	return func(c *client, args []string) error {
		if *target == "" {
			return usagef("--target is required")
		}
		vc, err := caps.capability()
		if err != nil {
			return err
		}
		resp, err := invoke(c, "NodePublishVolume", c.node.NodePublishVolume, &csi.NodePublishVolumeRequest{
			VolumeId:          args[0],
			PublishContext:    pctx.m,
			StagingTargetPath: *staging,
			TargetPath:        *target,
			VolumeCapability:  vc,
			Readonly:          *readonly,
			Secrets:           secrets.m,
			VolumeContext:     vctx.m,
		})
		if err != nil {
			return err
		}
		return c.emit(resp, func(t *table) { t.row("published volume " + args[0] + " at " + *target) })
	}
}

func setupNodeUnpublish(fs *flag.FlagSet) action {
	target := fs.String("target", "", "target `PATH` (required)")
	return func(c *client, args []string) error {
		if *target == "" {
			return usagef("--target is required")
		}
		resp, err := invoke(c, "NodeUnpublishVolume", c.node.NodeUnpublishVolume,
			&csi.NodeUnpublishVolumeRequest{VolumeId: args[0], TargetPath: *target})
		if err != nil {
			return err
		}
		return c.emit(resp, func(t *table) { t.row("unpublished volume " + args[0] + " from " + *target) })
	}
}

func setupNodeUnstage(fs *flag.FlagSet) action {
	staging := fs.String("staging", "", "staging target `PATH` (required)")
	return func(c *client, args []string) error {
		if *staging == "" {
			return usagef("--staging is required")
		}
		resp, err := invoke(c, "NodeUnstageVolume", c.node.NodeUnstageVolume,
			&csi.NodeUnstageVolumeRequest{VolumeId: args[0], StagingTargetPath: *staging})
		if err != nil {
			return err
		}
		return c.emit(resp, func(t *table) { t.row("unstaged volume " + args[0] + " from " + *staging) })
	}
}

func setupNodeInfo(*flag.FlagSet) action {
	return func(c *client, _ []string) error {
		resp, err := invoke(c, "NodeGetInfo", c.node.NodeGetInfo, &csi.NodeGetInfoRequest{})
		if err != nil {
			return err
		}
		return c.emit(resp, func(t *table) { nodeInfoRows(t, resp) })
	}
}
