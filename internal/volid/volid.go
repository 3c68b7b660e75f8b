// Package volid builds and parses CSI volume ids. An id names the backend
// instance and the backend's native id: "<instance>/<native>". Ids come from
// callers, so parsing checks them before any part is used.
package volid

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode"
)

// MaxLen is the longest id accepted. The CSI spec asks plugins to keep ids
// within 128 bytes so that every CO can store them.
const MaxLen = 128

var instanceRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

var (
	// ErrMalformed: the id cannot be valid for any plugin (empty, too
	// long, control characters). Callers answer InvalidArgument.
	ErrMalformed = errors.New("malformed volume id")
	// ErrForeign: the id is well formed but not one this plugin made.
	// Callers answer NotFound.
	ErrForeign = errors.New("not a volume id of this plugin")
)

// ValidInstance reports whether name can be a backend instance name.
func ValidInstance(name string) bool { return instanceRE.MatchString(name) }

// Join makes the CSI id for a native id of an instance.
func Join(instance, native string) string { return instance + "/" + native }

// Split parses a CSI volume id.
func Split(id string) (instance, native string, err error) {
	if err := CheckString(id, MaxLen); err != nil {
		return "", "", fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	instance, native, ok := strings.Cut(id, "/")
	if !ok || !ValidInstance(instance) || native == "" {
		return "", "", fmt.Errorf("%w: %q does not have the form <backend>/<id>", ErrForeign, id)
	}
	return instance, native, nil
}

// CheckString rejects empty strings, strings over max bytes, invalid UTF-8
// and control characters (NUL among them).
func CheckString(s string, max int) error {
	switch {
	case s == "":
		return errors.New("empty")
	case len(s) > max:
		return fmt.Errorf("%d bytes long, more than %d", len(s), max)
	case !validText(s):
		return errors.New("contains invalid UTF-8 or control characters")
	}
	return nil
}

func validText(s string) bool {
	for _, r := range s {
		if r == unicode.ReplacementChar || unicode.IsControl(r) {
			return false
		}
	}
	return true
}
