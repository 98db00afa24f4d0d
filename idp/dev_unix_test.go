//go:build unix

package idp

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestDevKeyPathWithoutHome: started with an empty environment (a container,
// a service, `env -i`) there is no configuration directory; the key then
// lives in a directory of the user's own under the temporary directory, and
// a directory there that anybody else could have made or entered is refused.
func TestDevKeyPathWithoutHome(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TOOLGATE_DEV_KEY", "")
	t.Setenv("XDG_CONFIG_HOME", "")
	t.Setenv("HOME", "")
	t.Setenv("TMPDIR", tmp)
	dir := filepath.Join(tmp, fmt.Sprintf("toolgate-%d", os.Getuid()))

	p, err := DevKeyPath()
	if want := filepath.Join(dir, "dev-signing-key.pem"); err != nil || p != want {
		t.Fatalf("DevKeyPath = %q, %v; want %q", p, err, want)
	}
	if st, err := os.Lstat(dir); err != nil || !st.IsDir() || st.Mode().Perm() != 0o700 {
		t.Fatalf("%s: %v, %v; want a directory of mode 0700", dir, st, err)
	}
	if p2, err := DevKeyPath(); err != nil || p2 != p {
		t.Errorf("second DevKeyPath = %q, %v; want %q", p2, err, p)
	}
	if _, err := LoadDevIssuer(p, devIss, devAud); err != nil {
		t.Errorf("LoadDevIssuer(%s): %v", p, err)
	}

	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if p, err := DevKeyPath(); err == nil {
		t.Errorf("DevKeyPath with %s of mode 0755 = %q; want an error", dir, p)
	}

	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	other := t.TempDir()
	if err := os.Symlink(other, dir); err != nil {
		t.Fatal(err)
	}
	if p, err := DevKeyPath(); err == nil {
		t.Errorf("DevKeyPath with %s a symbolic link = %q; want an error", dir, p)
	}
}
