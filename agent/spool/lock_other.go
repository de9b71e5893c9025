//go:build !unix

package spool

import (
	"os"
	"path/filepath"
)

// lockDir opens dir/lock; where flock does not exist, nothing keeps a second process out.
func lockDir(dir string) (*os.File, error) {
	return os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
}
