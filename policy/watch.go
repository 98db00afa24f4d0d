package policy

import (
	"context"
	"io/fs"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Debounce is how long the watcher waits for a burst of file events (an
// editor's save, a git checkout) to settle before it reloads.
const Debounce = 200 * time.Millisecond

// Watch reloads the policy whenever a file under the policy directory
// changes, until ctx ends. An embedded policy or a bundle is never watched. The
// directory tree is watched, subdirectories included, and watched anew after
// each change so that new folders are seen too.
func (e *Engine) Watch(ctx context.Context) error {
	if e.src.Dir == "" {
		return nil
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	if err := addTree(w, e.src.Dir); err != nil {
		w.Close()
		return err
	}
	go func() {
		defer w.Close()
		var timer <-chan time.Time
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if ev.Has(fsnotify.Chmod) || !within(e.src.Dir, ev.Name) {
					continue
				}
				timer = time.After(Debounce)
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				e.opts.Logger.Warn("policy watcher", "error", err)
			case <-timer:
				timer = nil
				_ = addTree(w, e.src.Dir) // pick up new folders; a vanished one shows in the reload
				_ = e.Reload()
			}
		}
	}()
	return nil
}

func addTree(w *fsnotify.Watcher, root string) error {
	// The parent too, so that the directory being replaced or removed is
	// noticed.
	_ = w.Add(filepath.Dir(filepath.Clean(root)))
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == root {
				return err
			}
			return nil
		}
		if d.IsDir() {
			if path != root && len(d.Name()) > 0 && d.Name()[0] == '.' {
				return filepath.SkipDir
			}
			return w.Add(path)
		}
		return nil
	})
}

// within reports whether path is root or lies below it.
func within(root, path string) bool {
	rel, err := filepath.Rel(filepath.Clean(root), filepath.Clean(path))
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}
