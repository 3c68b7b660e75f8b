package main

import (
	"github.com/csi-libstorage/csi-libstorage/internal/units"

	"flag"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

// newFlagSet returns a flag set that reports errors to its caller instead
// of printing them, so that every usage error has the same shape.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseInterspersed parses args allowing flags before and after positional
// arguments ("volume create NAME --size 1GiB"). A flag that takes a value
// takes the next argument whatever it looks like, so "--mount-flag --" or
// "--size -1" hand "--" and "-1" to the flag; only a "--" standing where a
// flag could start ends the flags, and everything after it is positional.
// The flag package's own Parse cannot be used in a loop here: after it
// returns, a "--" it consumed as a value and one it took as the end of
// the flags look the same.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(pos, args[i+1:]...), nil
		}
		if len(a) < 2 || a[0] != '-' {
			pos = append(pos, a)
			continue
		}
		name := strings.TrimPrefix(a[1:], "-")
		if name == "" || name[0] == '-' || name[0] == '=' {
			return nil, fmt.Errorf("bad flag syntax: %s", a)
		}
		name, value, hasValue := strings.Cut(name, "=")
		f := fs.Lookup(name)
		if f == nil {
			if name == "h" || name == "help" {
				return nil, flag.ErrHelp
			}
			return nil, fmt.Errorf("flag provided but not defined: -%s", name)
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			if !hasValue {
				value = "true"
			}
		} else if !hasValue {
			if i+1 == len(args) {
				return nil, fmt.Errorf("flag needs an argument: -%s", name)
			}
			i++
			value = args[i]
		}
		if err := fs.Set(name, value); err != nil {
			return nil, fmt.Errorf("invalid value %q for flag -%s: %v", value, name, err)
		}
	}
	return pos, nil
}

// deferredErrorer is a flag.Value that records a bad value instead of
// returning it from Set, because the flag package quotes the rejected
// value in its message and secrets must never be echoed.
type deferredErrorer interface {
	deferredError() error
}

func deferredFlagErrors(fs *flag.FlagSet) error {
	var err error
	fs.Visit(func(f *flag.Flag) {
		if d, ok := f.Value.(deferredErrorer); ok && err == nil {
			err = d.deferredError()
		}
	})
	return err
}

// kvFlag is a repeatable KEY=VALUE flag collecting into a map.
type kvFlag struct {
	name   string
	m      map[string]string
	secret bool
	err    error
}

func newKV(fs *flag.FlagSet, name, usage string) *kvFlag {
	f := &kvFlag{name: name}
	fs.Var(f, name, usage)
	return f
}

func newSecrets(fs *flag.FlagSet) *kvFlag {
	f := &kvFlag{name: "secret", secret: true}
	fs.Var(f, "secret", "secret `KEY=VALUE` passed to the plugin, never printed (repeatable)")
	return f
}

func (f *kvFlag) String() string { return "" }

func (f *kvFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	var err error
	switch {
	case !ok || k == "":
		if f.secret {
			err = fmt.Errorf("invalid --%s: want KEY=VALUE (value not shown)", f.name)
		} else {
			err = fmt.Errorf("want KEY=VALUE")
		}
	case hasKey(f.m, k):
		err = fmt.Errorf("duplicate key %q", k)
		if f.secret {
			err = fmt.Errorf("invalid --%s: %w", f.name, err)
		}
	}
	if err != nil {
		if f.secret {
			if f.err == nil {
				f.err = err
			}
			return nil
		}
		return err
	}
	if f.m == nil {
		f.m = map[string]string{}
	}
	f.m[k] = v
	return nil
}

func (f *kvFlag) deferredError() error { return f.err }

func hasKey(m map[string]string, k string) bool {
	_, ok := m[k]
	return ok
}

// secretValues returns the values of every secret flag set on fs, so
// that they can be scrubbed from anything printed.
func secretValues(fs *flag.FlagSet) []string {
	var out []string
	fs.Visit(func(f *flag.Flag) {
		if kv, ok := f.Value.(*kvFlag); ok && kv.secret {
			for _, v := range kv.m {
				if v != "" {
					out = append(out, v)
				}
			}
		}
	})
	// Longest first so that a secret containing another is scrubbed whole.
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(s string) error {
	*l = append(*l, s)
	return nil
}

// sizeFlag is a byte size parsed with units.ParseSize.
type sizeFlag struct {
	bytes int64
	set   bool
}

func (s *sizeFlag) String() string {
	if s == nil || !s.set {
		return ""
	}
	return fmt.Sprint(s.bytes)
}

func (s *sizeFlag) Set(v string) error {
	n, err := units.ParseSize(v)
	if err != nil {
		return err
	}
	s.bytes, s.set = n, true
	return nil
}

// capFlags are the flags that describe one csi.VolumeCapability.
type capFlags struct {
	fsType     string
	fsSet      bool
	block      bool
	mountFlags listFlag
	mode       string
}

type fsTypeValue struct{ c *capFlags }

func (v fsTypeValue) String() string {
	if v.c == nil {
		return ""
	}
	return v.c.fsType
}

func (v fsTypeValue) Set(s string) error {
	if s == "" {
		return fmt.Errorf("empty filesystem type")
	}
	v.c.fsType, v.c.fsSet = s, true
	return nil
}

// addCapFlags defines --fs, --block, --mount-flag and --mode on fs.
func addCapFlags(fs *flag.FlagSet) *capFlags {
	c := &capFlags{}
	fs.Var(fsTypeValue{c}, "fs", "mount access with filesystem `TYPE` (ext4, xfs, btrfs, ...); default mount access, plugin's filesystem")
	fs.BoolVar(&c.block, "block", false, "raw block access instead of a filesystem mount")
	fs.Var(&c.mountFlags, "mount-flag", "mount option `FLAG` for mount access (repeatable)")
	fs.StringVar(&c.mode, "mode", "", "access `MODE` (CSI enum name; default SINGLE_NODE_WRITER)")
	return c
}

// given reports whether any capability flag was used.
func (c *capFlags) given() bool {
	return c.fsSet || c.block || len(c.mountFlags) > 0 || c.mode != ""
}

// capability builds the volume capability the flags describe.
func (c *capFlags) capability() (*csi.VolumeCapability, error) {
	if c.block && c.fsSet {
		return nil, usagef("--fs and --block are mutually exclusive")
	}
	if c.block && len(c.mountFlags) > 0 {
		return nil, usagef("--mount-flag needs mount access, not --block")
	}
	mode, err := parseAccessMode(c.mode)
	if err != nil {
		return nil, err
	}
	vc := &csi.VolumeCapability{AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode}}
	if c.block {
		vc.AccessType = &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}}
	} else {
		vc.AccessType = &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{
			FsType:     c.fsType,
			MountFlags: append([]string(nil), c.mountFlags...),
		}}
	}
	return vc, nil
}

// accessModes lists the valid access mode names in enum order.
func accessModes() []string {
	var names []string
	for i := int32(1); ; i++ {
		n, ok := csi.VolumeCapability_AccessMode_Mode_name[i]
		if !ok {
			return names
		}
		names = append(names, n)
	}
}

// parseAccessMode maps a CSI enum name (case-insensitive) to its mode;
// the empty string means SINGLE_NODE_WRITER.
func parseAccessMode(s string) (csi.VolumeCapability_AccessMode_Mode, error) {
	if s == "" {
		return csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER, nil
	}
	v, ok := csi.VolumeCapability_AccessMode_Mode_value[strings.ToUpper(s)]
	if !ok || v == 0 {
		return 0, usagef("unknown access mode %q; valid modes: %s", s, strings.Join(accessModes(), ", "))
	}
	return csi.VolumeCapability_AccessMode_Mode(v), nil
}
