package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// completionCase is one completion request: the words typed so far, the
// last being the one completed, and words the reply must hold.
type completionCase struct {
	words []string
	want  []string
}

// completionCases are built from the command table, so every command, each
// of its flags and every global flag is asked for: a command added to the
// table without the scripts knowing it fails here.
func completionCases() []completionCase {
	var cases []completionCase
	for _, c := range commands {
		words := strings.Fields(c.path)
		last := words[len(words)-1]
		cases = append(cases, completionCase{append(append([]string{"csictl"}, words[:len(words)-1]...), last[:1]), []string{last}})
		fs := newFlagSet(c.path)
		c.setup(fs)
		if flags := flagNames(fs); len(flags) > 0 {
			typed := append(append([]string{"csictl", "-o", "json"}, words...), "-")
			cases = append(cases, completionCase{typed, flags})
		}
	}
	for _, g := range groups {
		cases = append(cases, completionCase{[]string{"csictl", "--endpoint", "/x.sock", ""}, []string{g.name}})
	}
	cases = append(cases,
		completionCase{[]string{"csictl", "-"}, flagNames(globalFlagSet(&globals{}))},
		completionCase{[]string{"csictl", "-o", ""}, []string{"table", "json", "yaml"}},
		completionCase{[]string{"csictl", "completion", ""}, []string{"bash", "zsh"}},
		completionCase{[]string{"csictl", "volume", "create", "v", "--mode", "MULTI_NODE_M"}, []string{"MULTI_NODE_MULTI_WRITER"}},
		completionCase{[]string{"csictl", "help", "sn"}, []string{"snapshot"}},
	)
	return cases
}

func shellWords(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = "'" + w + "'"
	}
	return strings.Join(q, " ")
}

// runCompletion sources the script in shell and answers every case; it
// returns each case's reply.
func runCompletion(t *testing.T, shell string, cases []completionCase) [][]string {
	t.Helper()
	script, errOut, code := csictl(t, "", "completion", shell)
	if code != 0 || errOut != "" {
		t.Fatalf("completion %s: exit %d, %s", shell, code, errOut)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "csictl."+shell)
	if err := os.WriteFile(file, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	var drv strings.Builder
	if shell == "bash" {
		fmt.Fprintf(&drv, "source %s\n", file)
		for i, c := range cases {
			fmt.Fprintf(&drv, "COMP_WORDS=(%s); COMP_CWORD=%d; COMPREPLY=(); _csictl; echo \"%d:${COMPREPLY[*]}\"\n", shellWords(c.words), len(c.words)-1, i)
		}
	} else {
		// Outside a completion widget compadd and _files do not exist:
		// stand-ins collect what the script offers, matching the word
		// typed so far by prefix as compadd does.
		fmt.Fprintf(&drv, "compadd() { [[ $1 == -- ]] && shift; local w; for w; do [[ $w == ${words[CURRENT]}* ]] && reply+=($w); done }\n_files() { }\ncompdef() { }\nsource %s\n", file)
		for i, c := range cases {
			fmt.Fprintf(&drv, "words=(%s); CURRENT=%d; reply=(); _csictl; print -r -- \"%d:${reply[*]}\"\n", shellWords(c.words), len(c.words), i)
		}
	}
	cmd := exec.Command(shell, "-c", drv.String())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", shell, err, out)
	}
	replies := make([][]string, len(cases))
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var i int
		idx, rest, ok := strings.Cut(line, ":")
		if _, err := fmt.Sscan(idx, &i); !ok || err != nil || i >= len(cases) {
			t.Fatalf("%s printed %q", shell, line)
		}
		replies[i] = strings.Fields(rest)
	}
	return replies
}

func TestCompletion(t *testing.T) {
	cases := completionCases()
	for _, shell := range []string{"bash", "zsh"} {
		t.Run(shell, func(t *testing.T) {
			if _, err := exec.LookPath(shell); err != nil {
				t.Fatalf("%s is needed to test its completion (apt-get install %s)", shell, shell)
			}
			replies := runCompletion(t, shell, cases)
			for i, c := range cases {
				got := " " + strings.Join(replies[i], " ") + " "
				for _, w := range c.want {
					if !strings.Contains(got, " "+w+" ") {
						t.Errorf("%s: completing %q offers %q, lacking %q", shell, c.words, replies[i], w)
					}
				}
			}
		})
	}
}

// A command added from another file's init, as new commands are, is
// completed without touching the scripts.
func TestCompletionFollowsTheTable(t *testing.T) {
	saved := commands
	defer func() { commands = saved }()
	commands = append(commands[:len(commands):len(commands)], &command{path: "volume frobnicate", summary: "x",
		setup: func(fs *flag.FlagSet) action { fs.Bool("wobble", false, ""); return nil }})
	for _, shell := range []string{"bash", "zsh"} {
		replies := runCompletion(t, shell, []completionCase{
			{[]string{"csictl", "volume", "fr"}, nil},
			{[]string{"csictl", "volume", "frobnicate", "--w"}, nil},
		})
		if strings.Join(replies[0], " ") != "frobnicate" || strings.Join(replies[1], " ") != "--wobble" {
			t.Errorf("%s: a new command and its flag complete as %q", shell, replies)
		}
	}
	if _, errOut, code := csictl(t, "", "completion", "fish"); code != 2 || !strings.Contains(errOut, `unknown shell "fish"; want bash or zsh`) {
		t.Errorf("completion fish: exit %d, %q", code, errOut)
	}
}
