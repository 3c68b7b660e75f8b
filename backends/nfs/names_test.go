package nfs

import (
	"strings"
	"testing"
	"time"
)

func TestDirName(t *testing.T) {
	cases := []struct {
		name     string
		wantSlug string
	}{
		{"pvc-0123abcd", "pvc-0123abcd"},
		{"Data Volume #1", "data-volume-1"},
		{"../../etc/passwd", "etc-passwd"},
		{"a/b\\c", "a-b-c"},
		{"..", ""},
		{"äöü", ""},
		{"---x---", "x"},
		{strings.Repeat("abc", 40), strings.Repeat("abc", 13) + "a"},
		{"4f5e0c1d-2b3a-4c5d-8e9f-0a1b2c3d4e5f", "4f5e0c1d-2b3a-4c5d-8e9f-0a1b2c3d4e5f"},
	}
	seen := map[string]string{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := dirName(c.name)
			if got != dirName(c.name) {
				t.Fatal("not stable")
			}
			if !validID(got) {
				t.Fatalf("%q gives %q, which validID refuses", c.name, got)
			}
			if strings.Contains(got, "..") || strings.ContainsAny(got, "/\\\x00") {
				t.Fatalf("%q gives unsafe %q", c.name, got)
			}
			slug := strings.TrimSuffix(strings.TrimPrefix(got, dirPrefix), got[len(got)-16:])
			if strings.TrimSuffix(slug, "-") != c.wantSlug {
				t.Fatalf("%q gives %q: slug %q, want %q", c.name, got, slug, c.wantSlug)
			}
			if other, ok := seen[got]; ok {
				t.Fatalf("%q and %q share %q", c.name, other, got)
			}
			seen[got] = c.name
		})
	}
	// Names that slug alike still get their own directory.
	if dirName("a b") == dirName("a-b") {
		t.Fatal(`"a b" and "a-b" share a directory`)
	}
}

func TestValidIDRefusesForeignNames(t *testing.T) {
	for _, id := range []string{"", "csi-", "csi-../0123456789abcdef", "csi-x/0123456789abcdef", "archived-csi-0123456789abcdef-1-00000000",
		"csi-0123456789ABCDEF", ".csi-libstorage", "csi--0123456789abcdef", "csi-" + strings.Repeat("a", 80) + "-0123456789abcdef"} {
		if validID(id) {
			t.Errorf("validID(%q) = true", id)
		}
	}
}

func TestArchiveNameNeverCollides(t *testing.T) {
	at := time.Unix(1700000000, 123456789)
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		n, err := archiveName("csi-x-0123456789abcdef", at) // the same instant every time
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(n, "archived-csi-x-0123456789abcdef-1700000000123456789-") {
			t.Fatalf("archive name %q", n)
		}
		if validID(n) {
			t.Fatalf("archive name %q looks like a live volume", n)
		}
		if seen[n] {
			t.Fatalf("archive name %q picked twice", n)
		}
		seen[n] = true
	}
}
