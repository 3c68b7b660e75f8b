package main

import (
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

func init() {
	commands = append(commands, &command{
		path: "completion", args: []string{"SHELL"}, local: true,
		summary: "print the bash or zsh completion script",
		help: "Bash:  source <(csictl completion bash)\n" +
			"       or save it as /etc/bash_completion.d/csictl\n" +
			"Zsh:   csictl completion zsh > \"${fpath[1]}/_csictl\"\n" +
			"       or source <(csictl completion zsh) after compinit\n\n" +
			"The scripts are generated from csictl's own command table.",
		setup: setupCompletion,
	})
}

func setupCompletion(*flag.FlagSet) action {
	return func(c *client, args []string) error {
		m := newCompletionModel()
		switch args[0] {
		case "bash":
			m.bash(c.out)
		case "zsh":
			m.zsh(c.out)
		default:
			return usagef("unknown shell %q; want bash or zsh", args[0])
		}
		return nil
	}
}

// completionModel is what both scripts complete, read from the command
// table, the groups and the flag sets, so a new command or flag is
// completed without anyone touching the scripts.
type completionModel struct {
	top         []string            // words that may follow csictl
	groups      []string            // words that take a subcommand
	sub         map[string][]string // group -> its subcommands
	globalFlags []string            // --endpoint, -o, --timeout
	valueFlags  []string            // global flags that take a value, in every spelling
	paths       []string            // command paths, sorted
	flags       map[string][]string // command path -> its flags
	flagWords   map[string][]string // flag name -> the values it takes
	argWords    map[string][]string // command path -> the values of its argument
}

func newCompletionModel() *completionModel {
	m := &completionModel{
		sub: map[string][]string{}, flags: map[string][]string{},
		flagWords: map[string][]string{
			"o":    {"table", "json", "yaml"},
			"mode": accessModes(),
			"fs":   {"ext4", "xfs", "btrfs", "ext3"},
		},
		argWords: map[string][]string{
			"completion": {"bash", "zsh"},
		},
	}
	m.top = append(m.top, "help")
	for _, g := range groups {
		m.groups = append(m.groups, g.name)
		m.top = append(m.top, g.name)
	}
	for _, c := range commands {
		m.paths = append(m.paths, c.path)
		if g, sub, ok := strings.Cut(c.path, " "); ok {
			m.sub[g] = append(m.sub[g], sub)
		} else {
			m.top = append(m.top, c.path)
		}
		fs := newFlagSet(c.path)
		c.setup(fs)
		m.flags[c.path] = flagNames(fs)
	}
	sort.Strings(m.paths)
	gfs := globalFlagSet(&globals{})
	m.globalFlags = flagNames(gfs)
	gfs.VisitAll(func(f *flag.Flag) {
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			return
		}
		m.valueFlags = append(m.valueFlags, "-"+f.Name, "--"+f.Name)
	})
	return m
}

// flagNames lists fs's flags as they are usually typed: --long, -x.
func flagNames(fs *flag.FlagSet) []string {
	var out []string
	fs.VisitAll(func(f *flag.Flag) {
		if len(f.Name) == 1 {
			out = append(out, "-"+f.Name)
		} else {
			out = append(out, "--"+f.Name)
		}
	})
	return out
}

// flagValueCases renders, for shell case patterns, each flag with known
// values in both spellings.
func (m *completionModel) flagValueCases() []struct {
	pattern string
	words   []string
} {
	var names []string
	for n := range m.flagWords {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []struct {
		pattern string
		words   []string
	}
	for _, n := range names {
		out = append(out, struct {
			pattern string
			words   []string
		}{"-" + n + "|--" + n, m.flagWords[n]})
	}
	return out
}

// shell is what differs between the bash and the zsh script; the logic
// is written once, in write.
type shell struct {
	name     string
	header   string
	words    string // declares cur, prev, first, last and how word i is read
	wordAt   string
	offer    func(words []string) string
	noOffer  string // when a command's argument has no known values
	register string
}

var bash = shell{
	name:   "bash",
	header: "",
	words: `    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"
    local first=1 last=$COMP_CWORD cmdpath="" w i
`,
	wordAt: `"${COMP_WORDS[i]}"`,
	offer: func(words []string) string {
		return `COMPREPLY=($(compgen -W "` + strings.Join(words, " ") + `" -- "$cur"))`
	},
	noOffer:  ":", // complete -o default falls back to file names
	register: "complete -o default -F _csictl csictl\n",
}

var zsh = shell{
	name:   "zsh",
	header: "#compdef csictl\n",
	words: `    local cur=${words[CURRENT]} prev=${words[CURRENT-1]}
    local first=2 last=$CURRENT cmdpath="" w i
`,
	wordAt: `${words[i]}`,
	offer: func(words []string) string {
		return "compadd -- " + strings.Join(words, " ")
	},
	noOffer: "_files",
	// Autoloaded from fpath the file's body is the function's; sourced,
	// it registers the function.
	register: "if [[ ${funcstack[1]} == _csictl ]]; then _csictl \"$@\"; else compdef _csictl csictl; fi\n",
}

func (m *completionModel) bash(w io.Writer) { m.write(w, bash) }
func (m *completionModel) zsh(w io.Writer)  { m.write(w, zsh) }

// write prints the completion script for sh. It walks the words typed so
// far to find the command (skipping global flags and their values), then
// offers the values of the flag just typed, or the command's flags, or
// the words that may come next.
func (m *completionModel) write(w io.Writer, sh shell) {
	p := func(f string, a ...any) { fmt.Fprintf(w, f, a...) }
	p("%s# %s completion for csictl, generated by \"csictl completion %s\" from\n# csictl's command table.\n", sh.header, sh.name, sh.name)
	p("_csictl() {\n%s", sh.words)
	p("    for ((i = first; i < last; i++)); do\n        w=%s\n", sh.wordAt)
	p("        if [[ -z \"$cmdpath\" ]]; then\n            case \"$w\" in\n")
	p("            %s) ((i++)); continue ;;\n            -*) continue ;;\n            esac\n", strings.Join(m.valueFlags, "|"))
	p("            cmdpath=\"$w\"\n        else\n            case \"$cmdpath\" in\n")
	p("            %s) cmdpath=\"$cmdpath $w\" ;;\n            esac\n        fi\n    done\n", strings.Join(m.groups, "|"))
	p("    case \"$prev\" in\n")
	for _, fv := range m.flagValueCases() {
		p("    %s) %s; return ;;\n", fv.pattern, sh.offer(fv.words))
	}
	p("    esac\n    case \"$cmdpath\" in\n")
	p("    \"\")\n        if [[ \"$cur\" == -* ]]; then %s\n        else %s; fi ;;\n", sh.offer(m.globalFlags), sh.offer(m.top))
	p("    help) %s ;;\n", sh.offer(m.top[1:]))
	for _, g := range m.groups {
		p("    %s) %s ;;\n", g, sh.offer(m.sub[g]))
	}
	for _, path := range m.paths {
		other := sh.noOffer
		if words := m.argWords[path]; len(words) > 0 {
			other = sh.offer(words)
		}
		p("    \"%s\")\n        if [[ \"$cur\" == -* ]]; then %s\n        else %s; fi ;;\n", path, sh.offer(m.flags[path]), other)
	}
	p("    esac\n}\n%s", sh.register)
}
