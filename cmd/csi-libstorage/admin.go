package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/internal/config"
	"github.com/csi-libstorage/csi-libstorage/internal/wiring"
)

// forceDetach is the operator's way to take a volume from a node that died
// with it attached and connected. No CO can trigger it: a CO only sends
// ControllerUnpublish, which the plugin refuses while the node still has
// the volume connected. It works on the backend directly, as the operator,
// and logs what it did.
func forceDetach(args []string) error {
	fs := flag.NewFlagSet("csi-libstorage force-detach", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "the plugin's configuration file")
	pool := fs.String("pool", "/var/lib/csi-libstorage/pool", "pool of the default file backend, used only without --config")
	volume := fs.String("volume", "", "volume id, <backend>/<id>")
	node := fs.String("node", "", "the dead node's id")
	yes := fs.Bool("yes-the-node-is-dead", false, "confirm that the node is powered off or fenced; if it is alive, two writers will corrupt the filesystem")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *volume == "" || *node == "" {
		return errors.New("force-detach needs --volume and --node")
	}
	if !*yes {
		return fmt.Errorf("refusing to take volume %s from node %s without --yes-the-node-is-dead: fence or power off %s first, or its writes will corrupt the volume once another node mounts it", *volume, *node, *node)
	}
	cfg := config.Default(*pool)
	if *cfgPath != "" {
		var err error
		if cfg, err = config.Load(*cfgPath); err != nil {
			return err
		}
	}
	log, err := newLogger("info", "console")
	if err != nil {
		return err
	}
	defer log.Sync()
	set, err := wiring.Backends(cfg, wiring.BackendOptions{Logger: log}, nil)
	if err != nil {
		return err
	}
	b, native, err := set.Resolve(*volume)
	if err != nil {
		return err
	}
	fd, ok := backends.As[backends.ForceDetacher](b)
	if !ok {
		return fmt.Errorf("backend %s cannot force a detach", b.Name())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := fd.ForceDetach(ctx, native, *node); err != nil {
		// Nothing matched, or the pool refused: either way nothing was
		// detached, and the exit status says so.
		return fmt.Errorf("nothing was detached: %w", err)
	}
	log.Warn("volume forcibly detached by the operator", zap.String("volume", *volume), zap.String("node", *node))
	return nil
}
