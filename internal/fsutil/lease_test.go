package fsutil

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestLeaseReading: the lease math. A lease may be taken only when it
// expired more than one period ago (age > 2 periods), never without a
// lease file and never with leases off (period 0).
func TestLeaseReading(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)
	const period = 15 * time.Second
	tests := []struct {
		name              string
		r                 LeaseReading
		period            time.Duration
		expired, takeable bool
	}{
		{"just renewed", LeaseReading{Found: true, Renewed: t0, Now: t0}, period, false, false},
		{"renewed after the reference", LeaseReading{Found: true, Renewed: t0.Add(time.Second), Now: t0}, period, false, false},
		{"at expiry", LeaseReading{Found: true, Renewed: t0, Now: t0.Add(period)}, period, false, false},
		{"expired", LeaseReading{Found: true, Renewed: t0, Now: t0.Add(period + time.Nanosecond)}, period, true, false},
		{"expired one period ago exactly", LeaseReading{Found: true, Renewed: t0, Now: t0.Add(2 * period)}, period, true, false},
		{"expired more than one period ago", LeaseReading{Found: true, Renewed: t0, Now: t0.Add(2*period + time.Nanosecond)}, period, true, true},
		{"no lease file", LeaseReading{Now: t0.Add(time.Hour)}, period, false, false},
		{"leases off", LeaseReading{Found: true, Renewed: t0, Now: t0.Add(time.Hour)}, 0, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.r.Expired(tt.period); got != tt.expired {
				t.Errorf("Expired = %t, want %t (age %v)", got, tt.expired, tt.r.Age())
			}
			if got := tt.r.Takeable(tt.period); got != tt.takeable {
				t.Errorf("Takeable = %t, want %t (age %v)", got, tt.takeable, tt.r.Age())
			}
			if tt.r.Found && !tt.r.TakeableAt(tt.period).Equal(tt.r.ExpiresAt(tt.period).Add(tt.period)) {
				t.Errorf("TakeableAt %v is not one period after ExpiresAt %v", tt.r.TakeableAt(tt.period), tt.r.ExpiresAt(tt.period))
			}
		})
	}
}

// TestLeaseRenewAndRead: a renewed lease reads as fresh; a node that never
// renewed has no lease to judge; an old lease ages by the filesystem's
// clock.
func TestLeaseRenewAndRead(t *testing.T) {
	l := NewLeases(t.TempDir())
	if err := l.Start("agent-a", 3*time.Second); err != nil {
		t.Fatal(err)
	}
	r, err := l.Read("agent-b", "agent-a")
	if err != nil {
		t.Fatal(err)
	}
	if !r.Found || r.Age() > 5*time.Second || r.Age() < 0 || r.Period != 3*time.Second {
		t.Fatalf("fresh lease read as %+v (age %v)", r, r.Age())
	}
	r, err = l.Read("agent-b", "agent-c")
	if err != nil {
		t.Fatal(err)
	}
	if r.Found || r.Takeable(time.Nanosecond) {
		t.Fatalf("a node without a lease file read as %+v", r)
	}
	// A lease last renewed an hour ago (as the filesystem saw it).
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(l.Path("agent-a"), old, old); err != nil {
		t.Fatal(err)
	}
	r, err = l.Read("agent-b", "agent-a")
	if err != nil {
		t.Fatal(err)
	}
	if !r.Takeable(15 * time.Second) {
		t.Fatalf("an hour-old lease is not takeable: age %v", r.Age())
	}
	if err := l.Release("agent-a"); err != nil {
		t.Fatal(err)
	}
	if err := l.Renew("agent-a"); err == nil {
		t.Fatal("Renew brought a released lease back")
	}
	if r, err = l.Read("agent-b", "agent-a"); err != nil || r.Found {
		t.Fatalf("released lease read as %+v, %v", r, err)
	}
}

// TestLeaseClockSkew: neither node's clock enters a judgement. A holder
// whose clock is an hour behind, or a judge whose clock is an hour ahead,
// leaves file times an hour off when they write them themselves (as a
// plain "touch" with the node's time would); Renew and Read set the times
// to the filesystem's now instead, so a just-renewed lease still reads as
// fresh and is never takeable.
func TestLeaseClockSkew(t *testing.T) {
	tests := []struct {
		name              string
		holderOff, refOff time.Duration
	}{
		{"holder clock behind", -time.Hour, 0},
		{"holder clock ahead", time.Hour, 0},
		{"judge clock ahead", 0, time.Hour},
		{"judge clock behind", 0, -time.Hour},
		{"both off", -time.Hour, time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			l := NewLeases(dir)
			for _, f := range []struct {
				path string
				off  time.Duration
			}{{l.Path("holder"), tt.holderOff}, {filepath.Join(dir, "judge.ref"), tt.refOff}} {
				if err := os.WriteFile(f.path, nil, 0o600); err != nil {
					t.Fatal(err)
				}
				skewed := time.Now().Add(f.off)
				if err := os.Chtimes(f.path, skewed, skewed); err != nil {
					t.Fatal(err)
				}
			}
			if err := l.Renew("holder"); err != nil {
				t.Fatal(err)
			}
			r, err := l.Read("judge", "holder")
			if err != nil {
				t.Fatal(err)
			}
			if r.Age() > 5*time.Second || r.Age() < -5*time.Second || r.Expired(15*time.Second) {
				t.Fatalf("a lease renewed just now reads as %v old", r.Age())
			}
		})
	}
}
