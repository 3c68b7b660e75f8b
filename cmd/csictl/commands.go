package main

import (
	"github.com/csi-libstorage/csi-libstorage/internal/units"

	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// command is one csictl command. setup defines its flags on fs and
// returns the action that runs once they are parsed. A command kept in a
// file of its own adds itself to commands from an init function; help
// and shell completion are generated from the table.
type command struct {
	path    string   // words that name it, e.g. "volume create"
	args    []string // positional arguments, e.g. {"NAME"}
	summary string   // one line, with the RPCs it makes
	help    string   // optional longer text
	setup   func(fs *flag.FlagSet) action
	// local commands run without a connection to the plugin (completion).
	local bool
}

type action func(c *client, args []string) error

var groups = []struct{ name, summary string }{
	{"volume", "volume lifecycle (Controller service)"},
	{"controller", "attach volumes to nodes (Controller service)"},
	{"node", "stage and publish volumes on this node (Node service)"},
	{"snapshot", "point-in-time copies of volumes (Controller service)"},
}

var commands = []*command{
	{path: "info", summary: "plugin info and capabilities, node info",
		help: "Calls GetPluginInfo, GetPluginCapabilities, ControllerGetCapabilities,\nNodeGetCapabilities and NodeGetInfo. A Controller or Node call answered with\nUnimplemented (a service the plugin does not serve in its mode) is shown as\nnot served (null in JSON).", setup: setupInfo},
	{path: "probe", summary: "check the plugin is ready (Probe); exits 1 if it is not", setup: setupProbe},

	{path: "volume create", args: []string{"NAME"}, summary: "create a volume (CreateVolume)",
		help: "Without --size or --limit the plugin chooses the capacity.\n\n" + units.Help, setup: setupVolumeCreate},
	{path: "volume list", summary: "list volumes (ListVolumes)",
		help: "Prints one page; --all follows next tokens and prints every volume.", setup: setupVolumeList},
	{path: "volume get", args: []string{"ID"}, summary: "show a volume and where it is published (ControllerGetVolume)", setup: setupVolumeGet},
	{path: "volume delete", args: []string{"ID"}, summary: "delete a volume (DeleteVolume)", setup: setupVolumeDelete},
	{path: "volume expand", args: []string{"ID"}, summary: "grow a volume (ControllerExpandVolume); then run node expand where it is staged",
		help: units.Help, setup: setupVolumeExpand},
	{path: "volume validate", args: []string{"ID"}, summary: "check a volume supports a capability (ValidateVolumeCapabilities); exits 1 if not confirmed", setup: setupVolumeValidate},

	{path: "controller publish", args: []string{"ID"}, summary: "attach a volume to a node and print the publish context (ControllerPublishVolume)", setup: setupControllerPublish},
	{path: "controller unpublish", args: []string{"ID"}, summary: "detach a volume from a node (ControllerUnpublishVolume)", setup: setupControllerUnpublish},

	{path: "node stage", args: []string{"ID"}, summary: "stage a volume at a staging path (NodeStageVolume)", setup: setupNodeStage},
	{path: "node publish", args: []string{"ID"}, summary: "publish a volume at a target path (NodePublishVolume)", setup: setupNodePublish},
	{path: "node unpublish", args: []string{"ID"}, summary: "unpublish a volume from a target path (NodeUnpublishVolume)", setup: setupNodeUnpublish},
	{path: "node unstage", args: []string{"ID"}, summary: "unstage a volume from a staging path (NodeUnstageVolume)", setup: setupNodeUnstage},
	{path: "node expand", args: []string{"ID"}, summary: "grow the device and filesystem of a staged volume (NodeExpandVolume)", setup: setupNodeExpand},
	{path: "node info", summary: "node ID, volume limit and topology (NodeGetInfo)", setup: setupNodeInfo},

	{path: "snapshot create", args: []string{"NAME"}, summary: "snapshot a volume (CreateSnapshot)", setup: setupSnapshotCreate},
	{path: "snapshot list", summary: "list snapshots (ListSnapshots)", setup: setupSnapshotList},
	{path: "snapshot delete", args: []string{"ID"}, summary: "delete a snapshot (DeleteSnapshot)", setup: setupSnapshotDelete},

	{path: "stats", args: []string{"ID"}, summary: "volume usage (NodeGetVolumeStats)", setup: setupStats},
	{path: "migrate", summary: "print CSI volume declarations for a libStorage (REX-Ray) service's volumes", help: migrateHelp, setup: setupMigrate},
	{path: "capacity", summary: "available capacity (GetCapacity)",
		help: "Capability flags are sent only when given.", setup: setupCapacity},
}

func findCommand(path string) *command {
	for _, c := range commands {
		if c.path == path {
			return c
		}
	}
	return nil
}

func isGroup(name string) bool {
	for _, g := range groups {
		if g.name == name {
			return true
		}
	}
	return false
}

func (c *command) synopsis() string {
	s := c.path
	if len(c.args) > 0 {
		s += " " + strings.Join(c.args, " ")
	}
	return s
}

func printMainUsage(w io.Writer) {
	fmt.Fprint(w, `csictl drives a CSI plugin over its gRPC socket.

Usage: csictl [global flags] COMMAND [ARGS] [flags]

Global flags (before COMMAND):
`)
	printFlags(w, globalFlagSet(&globals{}))
	fmt.Fprintln(w, "\nCommands:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  help [COMMAND]\tthis text, or a command's usage")
	for _, c := range commands {
		fmt.Fprintf(tw, "  %s\t%s\n", c.synopsis(), c.summary)
	}
	tw.Flush()
	fmt.Fprintf(w, `
Endpoints: unix:///abs/path, unix:/abs/path, /abs/path (unix socket),
tcp://host:port or host:port. Default %s.

%s

Access modes (--mode, CSI enum names, default SINGLE_NODE_WRITER):
  %s.

JSON output (-o json) is one document per command: the response in protojson
form with CSI field names; 64-bit integers are strings, unset fields omitted.
YAML output (-o yaml) is the same document in YAML.

Secrets (--secret) go to the plugin only; they are never printed.

Exit status: 0 success; 1 RPC error ("error: <RPC>: <code>: <message>") or a
negative result; 2 usage error. Run "csictl COMMAND --help" for its flags.
`, defaultEndpoint, units.Help, strings.Join(accessModes(), ",\n  "))
}

func printGroupUsage(w io.Writer, group string) {
	fmt.Fprintf(w, "Usage: csictl [global flags] %s SUBCOMMAND [ARGS] [flags]\n\nSubcommands:\n", group)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, c := range commands {
		if strings.HasPrefix(c.path, group+" ") {
			fmt.Fprintf(tw, "  %s\t%s\n", c.synopsis(), c.summary)
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "\nRun \"csictl %s SUBCOMMAND --help\" for its flags.\n", group)
}

// printCommandUsage prints c's synopsis and flags; long adds its help text.
func printCommandUsage(w io.Writer, c *command, long bool) {
	fmt.Fprintf(w, "Usage: csictl [global flags] %s [flags]\n\n%s\n", c.synopsis(), c.summary)
	if long && c.help != "" {
		fmt.Fprintf(w, "\n%s\n", c.help)
	}
	fs := newFlagSet(c.path)
	c.setup(fs)
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprintln(w, "\nFlags:")
		printFlags(w, fs)
	}
}

// printFlags lists fs's flags GNU-style: --long, -x for one-letter names.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fs.VisitAll(func(f *flag.Flag) {
		arg, usage := flag.UnquoteUsage(f)
		name := "--" + f.Name
		if len(f.Name) == 1 {
			name = "-" + f.Name
		}
		if arg != "" {
			name += " " + arg
		}
		switch f.DefValue {
		case "", "false", "0":
		default:
			usage += " (default " + f.DefValue + ")"
		}
		fmt.Fprintf(tw, "  %s\t%s\n", name, usage)
	})
	tw.Flush()
}
