package restore

import (
	"io"

	"github.com/tusk-pg/tusk/internal/backup"
)

type progressWriter struct {
	w io.Writer
	p backup.Progress
}

// Write has no ReadFrom sibling on purpose: callers copy through their own
// reused buffer.
func (c progressWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	if n > 0 {
		c.p.Add(int64(n))
	}
	return n, err
}
