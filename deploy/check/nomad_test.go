package check

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
)

const (
	nomadController = "plugin-controller.nomad.hcl"
	nomadNode       = "plugin-node.nomad.hcl"
	nomadVolume     = "volume.hcl"
	nomadExample    = "example-postgres.nomad.hcl"
)

func parseNomad(t *testing.T, files map[string]string) (map[string]*Body, error) {
	t.Helper()
	out := map[string]*Body{}
	for name, text := range files {
		b, err := ParseHCL(name, []byte(text))
		if err != nil {
			return nil, err
		}
		out[name] = b
	}
	return out, nil
}

func nomadErrs(t *testing.T, files map[string]string) []error {
	t.Helper()
	parsed, err := parseNomad(t, files)
	if err != nil {
		return []error{err}
	}
	errs := append(CheckNomadSchema(parsed, nomadVolume), CheckNomadPlugins(parsed, nomadController, nomadNode)...)
	return append(errs, CheckNomadVolume(parsed, nomadVolume)...)
}

func TestHCLParser(t *testing.T) {
	src := `
# comment
job "x" {
  type = "system" // trailing
  /* block
     comment */
  group "g" {
    task "t" {
      config {
        args = ["--a=${node.unique.name}", "b",]
        privileged = true
        n = 3
        m = { k = "v", "q": 1 }
      }
      template {
        data = <<-EOT
          backends:
            - name: x
        EOT
      }
    }
  }
}
`
	b, err := ParseHCL("x.hcl", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	job := b.BlocksOf("job")
	if len(job) != 1 || job[0].Labels[0] != "x" || job[0].Body.String("type") != "system" {
		t.Fatalf("job block misread: %+v", job)
	}
	cfg := b.Find("config")[0].Body
	if got := cfg.Strings("args"); len(got) != 2 || got[0] != "--a=${node.unique.name}" {
		t.Errorf("args = %q", got)
	}
	if p, ok := cfg.Bool("privileged"); !ok || !p {
		t.Error("privileged misread")
	}
	if got := b.Find("template")[0].Body.String("data"); got != "backends:\n  - name: x\n" {
		t.Errorf("heredoc = %q", got)
	}
	if got := cfg.Attrs["n"]; got != int64(3) {
		t.Errorf("n = %#v, want 3", got)
	}
	if got, _ := cfg.Attrs["m"].(map[string]any); got["k"] != "v" || got["q"] != int64(1) {
		t.Errorf("m = %#v", cfg.Attrs["m"])
	}
	for _, bad := range []string{
		`job "x" {`,              // never closed
		`job "x" { } }`,          // one too many
		`a = "unterminated`,      // string
		`a = upper("x")`,         // function call: the checks read literals
		`a = var.x[0]`,           // an index into a runtime variable
		"a = <<EOT\nno end\n",    // heredoc
		`a = 1` + "\n" + `a = 2`, // duplicate attribute
		`block "l" "m" = 3`,      // labels then =
		`a = [1 2]`,              // list without comma
	} {
		if _, err := ParseHCL("bad.hcl", []byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestNomadFiles(t *testing.T) {
	files := readDir(t, nomadDir(t), ".hcl")
	for _, f := range []string{nomadController, nomadNode, nomadVolume, nomadExample} {
		if _, ok := files[f]; !ok {
			t.Errorf("deploy/nomad/%s is missing", f)
		}
	}
	parsed, err := parseNomad(t, files)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(PluginTasks(parsed)); n != 2 {
		t.Errorf("found %d plugin tasks, want 2", n)
	}
	report(t, CheckNomadSchema(parsed, nomadVolume))
	report(t, CheckNomadPlugins(parsed, nomadController, nomadNode))
	report(t, CheckNomadVolume(parsed, nomadVolume))
}

func TestNomadChecksCatchBreakage(t *testing.T) {
	cases := []struct {
		name, file, old, new, want string
	}{
		{"unbalanced brace", nomadNode, "    task \"plugin\" {", "    task \"plugin\" {{", "Argument or block definition required"},
		{"node plugin not privileged", nomadNode, "        privileged = true\n", "        privileged = false\n", "without privileged = true"},
		{"node plugin with exec", nomadNode, "driver = \"docker\"", "driver = \"exec\"", "without privileged = true"},
		{"bad plugin type", nomadNode, "type      = \"node\"", "type      = \"nodes\"", "csi_plugin type \"nodes\""},
		{"controller file runs a node plugin", nomadController, "type      = \"controller\"", "type      = \"node\"", "want one of [controller monolith]"},
		{"plugin ids differ", nomadController, "id        = \"csi-libstorage\"", "id        = \"libstorage\"", "different csi_plugin ids"},
		{"mode does not match type", nomadNode, "--mode=node", "--mode=all", "--mode \"all\""},
		{"socket outside mount_dir", nomadNode, "mount_dir = \"/csi\"", "mount_dir = \"/plugin\"", "Nomad looks for the socket at unix:///plugin/csi.sock"},
		{"node plugin as a service", nomadNode, "type        = \"system\"", "type        = \"service\"", "must run on every client"},
		{"node id from the container", nomadNode, "--node-id=${node.unique.name}", "--node-id=n1", "--node-id=\"n1\""},
		{"latest plugin image", nomadController, "csi-libstorage:v0.1.0", "csi-libstorage:latest", "not pinned"},
		{"configs differ", nomadController, "allowOverwrite: false", "allowOverwrite: true", "different plugin configurations"},
		{"config with unknown backend type", nomadNode, "type: file", "type: nfs", "does not have"},
		{"pool not at its own path", nomadNode, "target = \"/var/lib/csi-libstorage/pool\"", "target = \"/pool\"", "not bind-mounted"},
		{"volume for another plugin", nomadVolume, "plugin_id = \"csi-libstorage\"", "plugin_id = \"csi.libstorage.io\"", "plugin_id \"csi.libstorage.io\""},
		{"volume fs_type disagrees", nomadVolume, "fs_type     = \"ext4\"", "fs_type     = \"xfs\"", "disagrees"},
		{"volume fs_type unknown", nomadVolume, "fs_type     = \"ext4\"", "fs_type     = \"zfs\"", "fs_type \"zfs\""},
		{"volume parameter misspelt", nomadVolume, "fsType  = \"ext4\"", "fs_type = \"ext4\"", "parameter \"fs_type\" is not known"},
		{"volume access mode unknown", nomadVolume, "access_mode     = \"single-node-reader-only\"", "access_mode     = \"single-node-reader\"", "not a Nomad access mode"},
		{"multi-writer file system", nomadVolume, "access_mode     = \"single-node-reader-only\"", "access_mode     = \"multi-node-multi-writer\"", "does not serve multi-node-multi-writer with file-system"},
		{"job asks for another volume", nomadExample, "source          = \"pg-data\"", "source          = \"pg\"", "has source \"pg\""},
		{"job asks for an unoffered capability", nomadExample, "attachment_mode = \"file-system\"", "attachment_mode = \"block-device\"", "does not offer"},
		{"volume not mounted", nomadExample, "volume      = \"data\"", "volume      = \"pgdata\"", "does not declare"},
		{"unpinned example image", nomadExample, "postgres:16.4", "postgres", "no tag"},
		// Misspelt arguments in the blocks the checks read: each would
		// otherwise fall back to a default without a word.
		{"misspelt mount_dir", nomadNode, "mount_dir = \"/csi\"", "mount_dirr = \"/csi\"", "An argument named \"mount_dirr\" is not expected here"},
		{"misspelt volume_mount read_only", nomadExample, "destination = \"/var/lib/postgresql/data\"", "destination = \"/var/lib/postgresql/data\"\n        readonly    = false", "An argument named \"readonly\" is not expected here"},
		{"misspelt group volume argument", nomadExample, "read_only       = false", "readonly        = false", "An argument named \"readonly\" is not expected here"},
		{"misspelt volume capacity", nomadVolume, "capacity_max = \"2GiB\"", "capacity_maxx = \"2GiB\"", "An argument named \"capacity_maxx\" is not expected here"},
		{"misspelt capability block", nomadVolume, "capability {\n  access_mode     = \"single-node-writer\"", "capabilty {\n  access_mode     = \"single-node-writer\"", "Blocks of type \"capabilty\" are not expected here"},
	}
	base := readDir(t, nomadDir(t), ".hcl")
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			errs := nomadErrs(t, mutate(t, base, c.file, c.old, c.new))
			if !strings.Contains(joinErrs(errs), c.want) {
				t.Errorf("not reported: %q; the checks said:\n%s", c.want, joinErrs(errs))
			}
		})
	}
}

// TestNomadImageVariable: both plugin jobs take the plugin image from one
// job variable, "image", with the same default, so `-var image=...` sets it
// for both and no job keeps a literal of its own.
func TestNomadImageVariable(t *testing.T) {
	files := readDir(t, nomadDir(t), ".hcl")
	imageRE := regexp.MustCompile(`(?m)^\s*image\s*=\s*var\.image\s*$`)
	check := func(files map[string]string) []string {
		var problems []string
		defaults := map[string]bool{}
		for _, name := range []string{"plugin-controller.nomad.hcl", "plugin-node.nomad.hcl"} {
			body, err := ParseHCL(name, []byte(files[name]))
			if err != nil {
				return []string{err.Error()}
			}
			def := ""
			for _, v := range body.BlocksOf("variable") {
				if len(v.Labels) == 1 && v.Labels[0] == "image" {
					def = v.Body.String("default")
				}
			}
			if def == "" {
				problems = append(problems, name+": no variable \"image\" with a default")
			}
			defaults[def] = true
			if !imageRE.MatchString(files[name]) {
				problems = append(problems, name+": the task's image is not var.image")
			}
			for _, pt := range PluginTasks(map[string]*Body{name: body}) {
				if img := taskConfig(pt.Task).String("image"); img != def {
					problems = append(problems, fmt.Sprintf("%s: the task's image reads as %q, not the variable's default %q", name, img, def))
				}
			}
		}
		if len(defaults) != 1 {
			problems = append(problems, fmt.Sprintf("the plugin jobs' image defaults differ: %v", defaults))
		}
		return problems
	}
	if p := check(files); len(p) > 0 {
		t.Errorf("shipped jobs: %v", p)
	}
	for _, m := range []struct{ file, old, new string }{
		{"plugin-node.nomad.hcl", "= var.image", `= "registry.example.com/csi-libstorage/csi-libstorage:v0.1.0"`},
		{"plugin-controller.nomad.hcl", ":v0.1.0\"", ":v0.1.1\""},
		{"plugin-node.nomad.hcl", `variable "image"`, `variable "img"`},
	} {
		if p := check(mutate(t, files, m.file, m.old, m.new)); len(p) == 0 {
			t.Errorf("%s with %q: no problem found", m.file, m.new)
		}
	}
}
