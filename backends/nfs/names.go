package nfs

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// dirPrefix starts every volume directory, so that the plugin's
// directories stand out from anything else on the export.
const dirPrefix = "csi-"

// maxSlug bounds the readable part of a directory name; the hash makes
// the name unique, the slug only helps an operator find it.
const maxSlug = 40

// idRE is what a volume directory (and so a native volume id) looks like.
// Ids come from callers: anything else is not this backend's volume.
var idRE = regexp.MustCompile(`^csi-(?:[a-z0-9]+(?:-[a-z0-9]+)*-)?[0-9a-f]{16}$`)

// dirName derives the volume directory from a CSI volume name: a readable
// slug of the name (lower-case letters and digits, other runs become one
// "-") and the first 64 bits of the name's SHA-256. The result is stable
// for a name, holds no separator and no "..", and two names that slug
// alike still differ by their hash.
func dirName(name string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(name) {
		switch {
		case r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = false
			b.WriteRune(r)
		default:
			dash = true
		}
		if b.Len() >= maxSlug {
			break
		}
	}
	slug := strings.TrimRight(b.String(), "-")
	if len(slug) > maxSlug {
		slug = strings.TrimRight(slug[:maxSlug], "-")
	}
	sum := sha256.Sum256([]byte(name))
	h := hex.EncodeToString(sum[:8])
	if slug == "" {
		return dirPrefix + h
	}
	return dirPrefix + slug + "-" + h
}

// validID reports whether id can name one of this backend's volumes.
func validID(id string) bool { return len(id) <= 80 && idRE.MatchString(id) }

// archivePrefix starts the name a deleted volume's directory is renamed
// to when onDelete is archive.
const archivePrefix = "archived-"

// archiveName is the name an archived directory gets: the volume's
// directory, the time of deletion in unix nanoseconds and 32 random bits,
// so neither two deletions of volumes of the same name nor two plugins
// archiving at the same instant can pick the same name.
func archiveName(dir string, now time.Time) (string, error) {
	var r [4]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", fmt.Errorf("random archive suffix: %w", err)
	}
	return fmt.Sprintf("%s%s-%d-%s", archivePrefix, dir, now.UnixNano(), hex.EncodeToString(r[:])), nil
}
