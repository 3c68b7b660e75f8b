package libstoragesim

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

type wire struct {
	t    *testing.T
	base string
}

func (w wire) do(method, path, instance, body string) (int, map[string]any) {
	w.t.Helper()
	var rd *bytes.Reader
	if body != "" {
		rd = bytes.NewReader([]byte(body))
	} else {
		rd = bytes.NewReader(nil)
	}
	req, err := http.NewRequest(method, w.base+path, rd)
	if err != nil {
		w.t.Fatal(err)
	}
	if instance != "" {
		req.Header.Set(headerInstanceID, instance)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get(headerServerName) == "" {
		w.t.Errorf("%s %s: no %s header", method, path, headerServerName)
	}
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func start(t *testing.T, opt Options) (*Server, wire) {
	t.Helper()
	s, err := New(opt)
	if err != nil {
		t.Fatal(err)
	}
	host, err := s.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, wire{t: t, base: "http://" + strings.TrimPrefix(host, "tcp://")}
}

// TestTranscript replays the wire transcript of a real REX-Ray 0.11.4
// server's vfs service (reference libstorage.md §5), traps included.
func TestTranscript(t *testing.T) {
	root := t.TempDir()
	_, w := start(t, Options{Services: []Service{{Name: "vfs", Driver: "vfs", Type: TypeObject, VFSRoot: root, NextDevice: NextDevice{Ignore: true}}}})
	steps := []struct {
		method, path, instance, body string
		code                         int
		check                        func(map[string]any) bool
	}{
		{"GET", "/services/vfs", "", "", 200, func(m map[string]any) bool { return m["driver"].(map[string]any)["type"] == "object" }},
		{"POST", "/volumes/vfs", "", `{"name":"v1","size":2,"iops":100,"type":"fast","availabilityZone":"z1","opts":{"k":"v"}}`, 201,
			func(m map[string]any) bool { return m["id"] == "vfs-000" && m["fields"].(map[string]any)["k"] == "v" }},
		// Trap 1: a second volume of the same name.
		{"POST", "/volumes/vfs", "", `{"name":"v1","size":2}`, 201, func(m map[string]any) bool { return m["id"] == "vfs-001" }},
		{"POST", "/volumes/vfs", "", `{"name":"v2","size":1,"bogus":1}`, 500, func(m map[string]any) bool { return strings.Contains(m["message"].(string), "validate req schema") }},
		{"GET", "/volumes/vfs/vfs-000", "", "", 200, func(m map[string]any) bool { return m["attachmentState"] == nil && m["attachments"] == nil }},
		{"GET", "/volumes/vfs/nope", "", "", 404, func(m map[string]any) bool { return m["message"] == "resource not found" }},
		{"POST", "/volumes/vfs/vfs-000?attach", "", `{}`, 400, func(m map[string]any) bool { return m["message"] == "missing instance ID" }},
		{"POST", "/volumes/vfs/vfs-000?attach", "vfs=node-a", `{"nextDeviceName":"/dev/xvdb"}`, 200, func(m map[string]any) bool { return m["attachToken"] == "/dev/xvdb" }},
		// vfs keeps a second node's attachment.
		{"POST", "/volumes/vfs/vfs-000?attach", "vfs=node-b", `{}`, 200, func(m map[string]any) bool {
			return len(m["volume"].(map[string]any)["attachments"].([]any)) == 2
		}},
		// Trap 2: an attached volume is deleted.
		{"DELETE", "/volumes/vfs/vfs-000", "", "", 204, nil},
		{"DELETE", "/volumes/vfs/vfs-999", "", "", 404, nil},
		{"POST", "/volumes/vfs/vfs-001?attach", "vfs=node-a", `{}`, 200, nil},
		// Trap 3: node-b's detach removes node-a's attachment.
		{"POST", "/volumes/vfs/vfs-001?detach", "vfs=node-b", `{}`, 205, func(m map[string]any) bool { return m["attachmentState"] == float64(Available) }},
		{"GET", "/volumes/vfs/vfs-001?attachments=1", "vfs=node-a", "", 200, func(m map[string]any) bool {
			return m["attachments"] == nil && m["attachmentState"] == float64(Available)
		}},
		{"POST", "/volumes/vfs/vfs-001?snapshot", "", `{"snapshotName":"s1"}`, 201, func(m map[string]any) bool { return m["id"] == "vfs-001-000" && m["volumeSize"] == float64(2) }},
		{"POST", "/snapshots/vfs/vfs-001-000?create", "", `{"volumeName":"x"}`, 500, nil},
		{"POST", "/snapshots/vfs/vfs-001-000?create", "", `{"name":"fromsnap","size":2}`, 201, func(m map[string]any) bool { return m["name"] == "fromsnap" }},
		{"POST", "/volumes/vfs/vfs-001?copy", "", `{"volumeName":"copy1"}`, 201, func(m map[string]any) bool { return m["name"] == "copy1" }},
		{"DELETE", "/snapshots/vfs/vfs-001-000", "", "", 205, nil},
		{"DELETE", "/snapshots/vfs/vfs-001-000", "", "", 404, nil},
	}
	for i, s := range steps {
		code, body := w.do(s.method, s.path, s.instance, s.body)
		if code != s.code {
			t.Fatalf("step %d %s %s: %d %v, want %d", i, s.method, s.path, code, body, s.code)
		}
		if s.check != nil && !s.check(body) {
			t.Errorf("step %d %s %s: body %v", i, s.method, s.path, body)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "vol", "vfs-000")); !os.IsNotExist(err) {
		t.Errorf("deleted volume's directory: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "vol", "vfs-001.json")); err != nil {
		t.Errorf("volume metadata file: %v", err)
	}
}

// TestTasks: one task at a time per service, 408 with the task after the
// task timeout, ?async=true with /tasks/{id}.
func TestTasks(t *testing.T) {
	timedOut := make(chan int, 4)
	s, w := start(t, Options{TaskTimeout: 30 * time.Millisecond, OnTimeout: func(_ string, id int) { timedOut <- id },
		Services: []Service{{Name: "vfs", Driver: "vfs", Type: TypeObject, VFSRoot: t.TempDir()}}})
	release := s.Hold("vfs")
	code, body := w.do("POST", "/volumes/vfs?async=true", "", `{"name":"a","size":1}`)
	if code != 202 || body["state"] != "queued" {
		t.Fatalf("async create: %d %v", code, body)
	}
	id := int(body["id"].(float64))
	code, body = w.do("POST", "/volumes/vfs", "", `{"name":"b","size":1}`)
	if code != 408 || body["state"] != "queued" {
		t.Fatalf("held create: %d %v, want 408 with the queued task", code, body)
	}
	<-timedOut
	if n := len(s.Volumes("vfs")); n != 0 {
		t.Fatalf("%d volumes while the service is held", n)
	}
	release()
	for _, tid := range []int{id, int(body["id"].(float64))} {
		for {
			code, tb := w.do("GET", "/tasks/"+strconv.Itoa(tid), "", "")
			if code != 200 {
				t.Fatalf("task %d: %d", tid, code)
			}
			if tb["state"] == "success" {
				if tb["result"].(map[string]any)["name"] == nil {
					t.Errorf("task %d result %v", tid, tb["result"])
				}
				break
			}
			time.Sleep(5 * time.Millisecond) // polling the API as a client does
		}
	}
	if vols := s.Volumes("vfs"); len(vols) != 2 || vols[0].Name != "a" || vols[1].Name != "b" {
		t.Errorf("volumes %+v, want a then b (one task at a time, in order)", vols)
	}
}
