package multi

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The status cache file is read from the home directory, where anything
// may have been written: whatever it holds, reading it neither panics nor
// yields a status that breaks the choice of a storage.
func FuzzStatusCacheFile(f *testing.F) {
	f.Add([]byte(`{"default#h":{"potential_aliveness":1,"actual_aliveness":1,"previous_aliveness":true,"updated":"2026-01-01T00:00:00Z"}}`))
	f.Add([]byte(`{"default#h":{"potential_aliveness":-1,"actual_aliveness":1e308,"updated":"9999-12-31T23:59:59Z"}}`))
	f.Add([]byte(`{"b#h":{"potential_aliveness":0,"actual_aliveness":0}}`))
	f.Add([]byte(`[1,2]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, "cache")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		c := newStatusCache(path, time.Hour, DefaultEMA(), nil)
		c.log = discardLog()
		keys := []key{{"default", "h"}, {"b", "h"}}
		relevant, outdated := c.read(keys)
		if len(relevant)+len(outdated) != len(keys) {
			t.Fatalf("read %v %v for %d storages", relevant, outdated, len(keys))
		}
		c.reported(keys[0], false, weightExists)
		c.checked(map[string]bool{"b": true}, keys)
		c.flush()
	})
}

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }
