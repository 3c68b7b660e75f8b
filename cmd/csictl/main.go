// Command csictl is an operator's command-line client for a CSI plugin
// socket: it calls the Identity, Controller and Node services directly so
// that a plugin can be inspected and driven without a container
// orchestrator.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// defaultEndpoint is the plugin's own default socket.
const defaultEndpoint = "unix:///run/csi-libstorage/csi.sock"

// defaultTimeout is the per-call deadline (the one Mesos applies to CSI calls).
const defaultTimeout = 60 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// globals holds the flags that precede the command.
type globals struct {
	endpoint string
	output   string
	timeout  time.Duration
}

// globalFlagSet defines the flags that precede the command.
func globalFlagSet(g *globals) *flag.FlagSet {
	fs := newFlagSet("csictl")
	def := os.Getenv("CSI_ENDPOINT")
	if def == "" {
		def = defaultEndpoint
	}
	fs.StringVar(&g.endpoint, "endpoint", def, "plugin `ADDRESS`; $CSI_ENDPOINT if set")
	fs.StringVar(&g.output, "o", "table", "output `FORMAT`: table (for people), json or yaml (one document per command)")
	fs.DurationVar(&g.timeout, "timeout", defaultTimeout, "per-RPC deadline `DURATION`, e.g. 30s")
	return fs
}

// run is the whole program: it parses args, runs one command and returns
// the exit status (0 success, 1 RPC error or negative result, 2 usage).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var g globals
	fs := globalFlagSet(&g)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printMainUsage(stdout)
			return 0
		}
		fmt.Fprintf(stderr, "error: %v\n", err)
		printMainUsage(stderr)
		return 2
	}
	if g.output != "table" && g.output != "json" && g.output != "yaml" {
		fmt.Fprintf(stderr, "error: -o must be table, json or yaml, not %q\n", g.output)
		return 2
	}
	if g.timeout <= 0 {
		fmt.Fprintf(stderr, "error: --timeout must be positive\n")
		return 2
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fmt.Fprintln(stderr, "error: no command given")
		printMainUsage(stderr)
		return 2
	}
	if rest[0] == "help" {
		return runHelp(rest[1:], stdout, stderr)
	}
	cmd, rest, code := lookup(rest, stdout, stderr)
	if cmd == nil {
		return code
	}
	return runCommand(ctx, &g, cmd, rest, stdout, stderr)
}

// lookup finds the command named by the leading words of args. When it
// returns a nil command it has already printed what is needed and code is
// the exit status.
func lookup(args []string, stdout, stderr io.Writer) (cmd *command, rest []string, code int) {
	word := args[0]
	if isHelpFlag(word) {
		printMainUsage(stdout)
		return nil, nil, 0
	}
	if c := findCommand(word); c != nil {
		return c, args[1:], 0
	}
	if !isGroup(word) {
		fmt.Fprintf(stderr, "error: unknown command %q\n", word)
		printMainUsage(stderr)
		return nil, nil, 2
	}
	if len(args) < 2 {
		fmt.Fprintf(stderr, "error: %s: missing subcommand\n", word)
		printGroupUsage(stderr, word)
		return nil, nil, 2
	}
	if isHelpFlag(args[1]) {
		printGroupUsage(stdout, word)
		return nil, nil, 0
	}
	if c := findCommand(word + " " + args[1]); c != nil {
		return c, args[2:], 0
	}
	fmt.Fprintf(stderr, "error: unknown command %q\n", word+" "+args[1])
	printGroupUsage(stderr, word)
	return nil, nil, 2
}

func isHelpFlag(s string) bool {
	switch s {
	case "-h", "-help", "--help", "--h":
		return true
	}
	return false
}

// runHelp implements "csictl help [COMMAND...]".
func runHelp(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		printMainUsage(stdout)
		return 0
	}
	name := strings.Join(args, " ")
	if c := findCommand(name); c != nil {
		printCommandUsage(stdout, c, true)
		return 0
	}
	if len(args) == 1 && isGroup(args[0]) {
		printGroupUsage(stdout, args[0])
		return 0
	}
	fmt.Fprintf(stderr, "error: help: unknown command %q\n", name)
	printMainUsage(stderr)
	return 2
}

// runCommand parses the command's flags, connects and runs it.
func runCommand(ctx context.Context, g *globals, cmd *command, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("csictl " + cmd.path)
	act := cmd.setup(fs)
	pos, err := parseInterspersed(fs, args)
	if err == nil {
		err = deferredFlagErrors(fs)
	}
	if err == nil {
		err = checkArgs(cmd, pos)
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printCommandUsage(stdout, cmd, true)
			return 0
		}
		fmt.Fprintf(stderr, "error: %s: %v%s\n", cmd.path, err, globalFlagHint(err))
		printCommandUsage(stderr, cmd, false)
		return 2
	}

	if cmd.local {
		c := &client{ctx: ctx, g: g, out: stdout}
		return reportError(act(c, pos), c, cmd, stderr)
	}
	ep, err := parseEndpoint(g.endpoint)
	if err != nil {
		fmt.Fprintf(stderr, "error: %v\n", err)
		return 2
	}
	conn, err := dial(ep)
	if err != nil {
		fmt.Fprintf(stderr, "error: connect %s: %v\n", g.endpoint, err)
		return 1
	}
	defer conn.Close()

	c := newClient(ctx, g, conn, stdout)
	c.secrets = secretValues(fs)
	err = act(c, pos)
	return reportError(err, c, cmd, stderr)
}

// reportError prints err in the documented format and returns the exit
// status for it.
func reportError(err error, c *client, cmd *command, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "error: %s: %s\n", cmd.path, ue.msg)
		printCommandUsage(stderr, cmd, false)
		return 2
	}
	fmt.Fprintf(stderr, "error: %s\n", c.redact(err.Error()))
	return 1
}

// globalFlagHint explains a global flag given after the command.
func globalFlagHint(err error) string {
	const prefix = "flag provided but not defined: -"
	msg := err.Error()
	if !strings.HasPrefix(msg, prefix) {
		return ""
	}
	name := strings.TrimLeft(strings.TrimPrefix(msg, prefix), "-")
	if globalFlagSet(&globals{}).Lookup(name) == nil {
		return ""
	}
	return " (global flags go before the command)"
}

func checkArgs(cmd *command, pos []string) error {
	switch {
	case len(pos) < len(cmd.args):
		return fmt.Errorf("missing %s", strings.Join(cmd.args[len(pos):], " "))
	case len(pos) > len(cmd.args):
		return fmt.Errorf("unexpected argument %q", pos[len(cmd.args)])
	}
	for i, p := range pos {
		if p == "" {
			return fmt.Errorf("%s must not be empty", cmd.args[i])
		}
	}
	return nil
}

// usageError is an error in how a command was invoked (exit status 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error {
	return &usageError{msg: fmt.Sprintf(format, a...)}
}
