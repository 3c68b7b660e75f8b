package fsutil

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "meta.json")
	for _, content := range []string{"first", "second, longer"} {
		if err := WriteFileAtomic(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(p)
		if err != nil || string(got) != content {
			t.Fatalf("content %q, %v; want %q", got, err, content)
		}
	}
	fi, _ := os.Stat(p)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}
	if err := WriteFileAtomic(filepath.Join(dir, "missing", "x"), nil, 0o600); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
}

func TestLockPathWaitsAndHonoursDeadline(t *testing.T) {
	p := filepath.Join(t.TempDir(), "lock")
	held, err := LockPath(context.Background(), p, true)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, err := LockPath(ctx, p, true); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second lock while held: %v, want deadline exceeded", err)
	}
	got := make(chan error, 1)
	go func() {
		f, err := LockPath(context.Background(), p, true)
		if err == nil {
			f.Close()
		}
		got <- err
	}()
	time.Sleep(20 * time.Millisecond)
	held.Close()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waiter did not get the lock after it was released")
	}
}

// A lock taken on a file that was removed meanwhile is not trusted: the
// waiter either locks the new file or is told the path is gone.
func TestLockPathRechecksRemovedFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "name")
	held, err := LockPath(context.Background(), p, true)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		f, err := LockPath(context.Background(), p, false)
		if err == nil {
			f.Close()
		}
		got <- err
	}()
	time.Sleep(20 * time.Millisecond)
	os.Remove(p)
	held.Close()
	if err := <-got; !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("lock of a removed file: %v, want not exist", err)
	}
}
