package cli

import (
	"fmt"
	"os"
	"sync"
)

// LogFile is WALG_LOG_DESTINATION opened for appending. Reopen lets a log
// rotator move the file away and have the daemon write to a new one: WAL-G's
// daemon does this on SIGUSR1, so rotation set up for it keeps working (and
// the signal, whose default action ends a process, does not stop tusk).
type LogFile struct {
	mu   sync.Mutex
	path string
	f    *os.File
}

func OpenLogFile(path string) (*LogFile, error) {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("WALG_LOG_DESTINATION: cannot open %s: %w", path, err)
	}
	return &LogFile{path: path, f: f}, nil
}

func (l *LogFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Write(p)
}

// Reopen opens the path again and closes the old file; on failure the old
// file stays in use.
func (l *LogFile) Reopen() error {
	f, err := os.OpenFile(l.path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("WALG_LOG_DESTINATION: cannot reopen %s: %w", l.path, err)
	}
	l.mu.Lock()
	old := l.f
	l.f = f
	l.mu.Unlock()
	return old.Close()
}

func (l *LogFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}

// Path is the file's path.
func (l *LogFile) Path() string { return l.path }
