package multi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"sync"
	"time"

	"github.com/tusk-pg/tusk/internal/fsutil"
)

// EMAParams tune how reported operation results move a storage between
// alive and dead (WALG_FAILOVER_STORAGES_CACHE_EMA_*): an exponential
// moving average of operation weights, whose factor alpha slides within
// AlphaAlive or AlphaDead with the current aliveness.
type EMAParams struct {
	AliveLimit, DeadLimit float64
	AlphaAlive, AlphaDead AlphaRange
}

// AlphaRange bounds alpha.
type AlphaRange struct{ Min, Max float64 }

// DefaultEMA are WAL-G's defaults: a fully dead storage is alive again
// after about 20 successful operations in a row, a fully alive one dead
// after about 10 failures in a row.
func DefaultEMA() EMAParams {
	return EMAParams{
		AliveLimit: 0.99, DeadLimit: 0.88,
		AlphaAlive: AlphaRange{Min: 0.01, Max: 0.05},
		AlphaDead:  AlphaRange{Min: 0.1, Max: 0.5},
	}
}

// Validate applies WAL-G's rules: every value in (0, 1), the alive limit
// above the dead one, each range's minimum at most its maximum. The error
// names the setting.
func (p EMAParams) Validate() error {
	const pre = "WALG_FAILOVER_STORAGES_CACHE_EMA_"
	for _, v := range []struct {
		name string
		val  float64
	}{
		{"ALIVE_LIMIT", p.AliveLimit}, {"DEAD_LIMIT", p.DeadLimit},
		{"ALPHA_ALIVE_MIN", p.AlphaAlive.Min}, {"ALPHA_ALIVE_MAX", p.AlphaAlive.Max},
		{"ALPHA_DEAD_MIN", p.AlphaDead.Min}, {"ALPHA_DEAD_MAX", p.AlphaDead.Max},
	} {
		if !(v.val > 0 && v.val < 1) {
			return fmt.Errorf("%s%s: %v is not between 0 and 1 (exclusive)", pre, v.name, v.val)
		}
	}
	switch {
	case p.AliveLimit < p.DeadLimit:
		return fmt.Errorf("%sALIVE_LIMIT (%v) must not be below %sDEAD_LIMIT (%v)", pre, p.AliveLimit, pre, p.DeadLimit)
	case p.AlphaAlive.Min > p.AlphaAlive.Max:
		return fmt.Errorf("%sALPHA_ALIVE_MIN (%v) must not exceed %sALPHA_ALIVE_MAX (%v)", pre, p.AlphaAlive.Min, pre, p.AlphaAlive.Max)
	case p.AlphaDead.Min > p.AlphaDead.Max:
		return fmt.Errorf("%sALPHA_DEAD_MIN (%v) must not exceed %sALPHA_DEAD_MAX (%v)", pre, p.AlphaDead.Min, pre, p.AlphaDead.Max)
	}
	return nil
}

// status is one storage's entry in the cache, with WAL-G's JSON names so
// that the cache file has WAL-G's shape.
type status struct {
	// Potential is the aliveness had every reported operation succeeded;
	// Actual counts only the successful ones.
	Potential float64   `json:"potential_aliveness"`
	Actual    float64   `json:"actual_aliveness"`
	WasAlive  bool      `json:"previous_aliveness"`
	Updated   time.Time `json:"updated"`
}

func (s status) noData() bool { return s.Potential == 0 && s.Actual == 0 }

func (s status) factor(p EMAParams) float64 {
	if s.noData() {
		// Only checked, never used: exactly at the dead limit, so a storage
		// that passed its check counts as alive and one that failed as dead.
		return p.DeadLimit
	}
	return s.Actual / s.Potential
}

// alive has hysteresis: an alive storage stays alive down to the dead
// limit, a dead one must climb to the alive limit.
func (s status) alive(p EMAParams) bool {
	if s.WasAlive {
		return s.factor(p) >= p.DeadLimit
	}
	return s.factor(p) >= p.AliveLimit
}

// checked is the status after an explicit check: fully alive or fully
// dead, keeping the operations' scale.
func (s status) checked(alive bool, at time.Time) status {
	actual := 0.0
	if alive {
		actual = s.Potential
	}
	return status{Potential: s.Potential, Actual: actual, WasAlive: alive, Updated: at}
}

// reported applies one operation's result of weight w.
func (s status) reported(p EMAParams, ok bool, w float64, at time.Time) status {
	a := s.alpha(p)
	got := 0.0
	if ok {
		got = w
	}
	return status{
		Potential: w*a + s.Potential*(1-a),
		Actual:    got*a + s.Actual*(1-a),
		WasAlive:  s.alive(p),
		Updated:   at,
	}
}

// alpha is largest far from the limit the storage would cross next
// (fully alive, or fully dead) and smallest near it, so a storage
// settles quickly and flips only on sustained evidence.
func (s status) alpha(p EMAParams) float64 {
	f := s.factor(p)
	if s.alive(p) {
		amp := (f - p.DeadLimit) / (1 - p.DeadLimit)
		return p.AlphaAlive.Max + (p.AlphaAlive.Min-p.AlphaAlive.Max)*amp
	}
	amp := f / p.AliveLimit
	return p.AlphaDead.Max + (p.AlphaDead.Min-p.AlphaDead.Max)*amp
}

// Weights of the operations, WAL-G's: reads and writes grow with the
// logarithm of their size in MiB (an unknown size, -1, weighs as 0).
const (
	weightExists = 1000
	weightList   = 2000
	weightDelete = 500
)

func weightSized(size int64) float64 { return scaleWeight(1000, size>>20) }

func weightDeleteN(n int) float64 { return scaleWeight(weightDelete, int64(n)) }

func scaleWeight(w float64, scale int64) float64 {
	if scale <= 1 {
		return w
	}
	return w * (1 + math.Log10(float64(scale)))
}

// statusCache keeps the statuses of the storages in memory for the
// process and in a file shared between processes (WAL-G's
// ~/.walg_storage_{ro,rw}_status_cache): entries are keyed "name#hash",
// so configurations that give one name to different storages do not
// share an entry, and a merge keeps the newer entry of each key.
type statusCache struct {
	mu       sync.Mutex
	mem      map[string]status
	ttl      time.Duration
	ema      EMAParams
	path     string    // "" keeps the cache in memory only
	fileTime time.Time // when the file was last written (its mtime at start)
	// flushEvery bounds how stale the file may get in a long-running
	// process (the daemon); short processes flush on Close.
	flushEvery time.Duration
	log        *slog.Logger
	now        func() time.Time
}

// maxCacheFile bounds what is read from the cache file: a few hundred
// bytes per storage are expected.
const maxCacheFile = 1 << 20

func newStatusCache(path string, ttl time.Duration, ema EMAParams, log *slog.Logger) *statusCache {
	c := &statusCache{mem: map[string]status{}, ttl: ttl, ema: ema, path: path,
		flushEvery: 5 * time.Minute, log: log, now: time.Now}
	if path != "" {
		if st, err := os.Stat(path); err == nil {
			c.fileTime = st.ModTime()
		}
	}
	return c
}

// read splits the statuses of keys into relevant (updated within the
// lifetime) and outdated ones (older, or never seen), as alive maps by
// storage name. The file is read only when memory cannot answer alone.
func (c *statusCache) read(keys []key) (relevant, outdated map[string]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if !c.memRelevant(keys, now) {
		c.mem = mergeNewer(c.mem, c.readFile())
	}
	relevant, outdated = map[string]bool{}, map[string]bool{}
	for _, k := range keys {
		s, ok := c.mem[k.String()]
		if ok && now.Sub(s.Updated) <= c.ttl {
			relevant[k.Name] = s.alive(c.ema)
		} else {
			outdated[k.Name] = s.alive(c.ema)
		}
	}
	return relevant, outdated
}

func (c *statusCache) memRelevant(keys []key, now time.Time) bool {
	if len(c.mem) == 0 {
		return false
	}
	for _, k := range keys {
		s, ok := c.mem[k.String()]
		if !ok || now.Sub(s.Updated) > c.ttl {
			return false
		}
	}
	return true
}

// checked records explicit check results and returns the alive map of
// keys (those with a status).
func (c *statusCache) checked(results map[string]bool, keys []key) map[string]bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	for _, k := range keys {
		if alive, ok := results[k.Name]; ok {
			c.mem[k.String()] = c.mem[k.String()].checked(alive, now)
		}
	}
	out := map[string]bool{}
	for _, k := range keys {
		if s, ok := c.mem[k.String()]; ok {
			out[k.Name] = s.alive(c.ema)
		}
	}
	c.flushIfStale(now)
	return out
}

// reported applies one operation's result.
func (c *statusCache) reported(k key, ok bool, weight float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	c.mem[k.String()] = c.mem[k.String()].reported(c.ema, ok, weight, now)
	c.flushIfStale(now)
}

func (c *statusCache) flushIfStale(now time.Time) {
	if c.path != "" && now.Sub(c.fileTime) >= c.flushEvery {
		c.flushLocked(now)
	}
}

// flush merges memory into the file.
func (c *statusCache) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.path != "" {
		c.flushLocked(c.now())
	}
}

func (c *statusCache) flushLocked(now time.Time) {
	merged := mergeNewer(c.mem, c.readFile())
	data, err := json.Marshal(merged)
	if err == nil {
		// A new file renamed into place: a reader never sees half of it,
		// and a symlink planted at the name is replaced, not followed.
		err = fsutil.WriteFile(c.path, fsutil.Options{Perm: 0o600, NoSync: true}, func(f *os.File) error {
			_, err := f.Write(data)
			return err
		})
	}
	if err != nil {
		c.log.Warn("cannot write the storage status cache", "file", c.path, "error", err)
		return
	}
	c.fileTime = now
}

// readFile returns the file's statuses; a missing, unreadable or
// malformed file is an empty cache (the storages are then checked).
func (c *statusCache) readFile() map[string]status {
	if c.path == "" {
		return nil
	}
	f, err := os.Open(c.path)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			c.log.Warn("cannot read the storage status cache", "file", c.path, "error", err)
		}
		return nil
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxCacheFile+1))
	var out map[string]status
	if err == nil && len(data) > maxCacheFile {
		err = fmt.Errorf("more than %d bytes", maxCacheFile)
	}
	if err == nil {
		err = json.Unmarshal(data, &out)
	}
	if err != nil {
		c.log.Warn("ignoring the storage status cache", "file", c.path, "error", err)
		return nil
	}
	return out
}

func mergeNewer(a, b map[string]status) map[string]status {
	out := make(map[string]status, max(len(a), len(b)))
	for k, s := range a {
		out[k] = s
	}
	for k, s := range b {
		if cur, ok := out[k]; !ok || s.Updated.After(cur.Updated) {
			out[k] = s
		}
	}
	return out
}

// key names a storage in the cache: unique within one configuration by
// Name, across configurations by Hash.
type key struct{ Name, Hash string }

func (k key) String() string { return k.Name + "#" + k.Hash }
