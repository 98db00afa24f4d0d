//go:build unix

package idp

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// privateTempDir is toolgate-<uid> in the temporary directory, made mode
// 0700 when missing. The temporary directory is shared, so the directory is
// used only when it is a real directory (not a link) of this user that no
// one else may enter: another user who made it first could read or plant
// the key. noConfigDir is why no configuration directory was found.
func privateTempDir(noConfigDir error) (string, error) {
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("toolgate-%d", os.Getuid()))
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("%w; %w", noConfigDir, err)
	}
	st, err := os.Lstat(dir)
	if err != nil {
		return "", fmt.Errorf("%w; %w", noConfigDir, err)
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !st.IsDir() || !ok || int(sys.Uid) != os.Getuid() || st.Mode().Perm() != 0o700 {
		return "", fmt.Errorf("%v; %s is not a directory of mode 0700 owned by this user: remove it or set $TOOLGATE_DEV_KEY", noConfigDir, dir)
	}
	return dir, nil
}
