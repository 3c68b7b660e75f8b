package backends

import (
	"errors"
	"fmt"

	"github.com/csi-libstorage/csi-libstorage/internal/volid"
)

// Set is the configured backend instances, in configuration order; the
// first is the default for requests that name none.
type Set struct {
	list   []Backend
	byName map[string]Backend
}

// NewSet checks that the instance names are valid and unique.
func NewSet(list ...Backend) (*Set, error) {
	if len(list) == 0 {
		return nil, fmt.Errorf("no backend configured")
	}
	s := &Set{byName: make(map[string]Backend)}
	for _, b := range list {
		if !volid.ValidInstance(b.Name()) {
			return nil, fmt.Errorf("backend name %q: use letters, digits, '.', '_' and '-', starting with a letter or digit", b.Name())
		}
		if _, dup := s.byName[b.Name()]; dup {
			return nil, fmt.Errorf("backend name %q is used twice", b.Name())
		}
		s.byName[b.Name()] = b
		s.list = append(s.list, b)
	}
	return s, nil
}

// All returns the backends in configuration order.
func (s *Set) All() []Backend { return s.list }

// Default returns the first backend.
func (s *Set) Default() Backend { return s.list[0] }

// Get returns the backend called name.
func (s *Set) Get(name string) (Backend, bool) {
	b, ok := s.byName[name]
	return b, ok
}

// Resolve splits a CSI volume id and finds its backend. It wraps
// volid.ErrMalformed for ids no plugin could have made, and ErrNotFound for
// ids that are not this plugin's.
func (s *Set) Resolve(id string) (Backend, string, error) {
	inst, native, err := volid.Split(id)
	if err != nil {
		if errors.Is(err, volid.ErrForeign) {
			return nil, "", fmt.Errorf("volume %q: %w", id, ErrNotFound)
		}
		return nil, "", err
	}
	b, ok := s.byName[inst]
	if !ok {
		return nil, "", fmt.Errorf("volume %q: no backend %q is configured: %w", id, inst, ErrNotFound)
	}
	return b, native, nil
}
