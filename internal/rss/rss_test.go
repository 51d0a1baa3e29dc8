//go:build linux

package rss

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

func rssFile(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "RssFile:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return n
		}
	}
	t.Skip("no RssFile in /proc/self/status")
	return 0
}

// Dropping the executable's clean pages shrinks RssFile, and the program
// keeps running (its code faults back in).
func TestDropFilePages(t *testing.T) {
	before := rssFile(t)
	DropFilePages()
	after := rssFile(t)
	t.Logf("RssFile %d kB → %d kB", before, after)
	if after >= before {
		t.Fatalf("RssFile did not shrink: %d kB → %d kB", before, after)
	}
	// Still working: exercise some code and data again.
	if strings.Repeat("x", 3) != "xxx" {
		t.Fatal("broken")
	}
}
