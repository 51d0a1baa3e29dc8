package main

import (
	"fmt"
	"os"
	"runtime/debug"
	"strconv"

	"github.com/tusk-pg/tusk/internal/codec"
	"github.com/tusk-pg/tusk/internal/crypt"
	"github.com/tusk-pg/tusk/internal/memplan"
	"github.com/tusk-pg/tusk/internal/wal"
)

// walUploaderFacts is what the plan of every WAL uploader (the daemon,
// wal-receive) starts from: the buffering it will run with, decided as the
// running process decides it but without connecting; what one upload
// spools in memory under that buffering; and the components' facts.
func (a *app) walUploaderFacts() (buffering string, spool int64, facts memplan.Facts, err error) {
	method, err := a.Compression()
	if err != nil {
		return "", 0, facts, err
	}
	cr, err := a.Crypter()
	if err != nil {
		return "", 0, facts, err
	}
	if buffering, _, err = a.WALBuffering(cr); err != nil {
		return "", 0, facts, err
	}
	if facts, err = a.memoryFacts(method, cr); err != nil {
		return "", 0, facts, err
	}
	if buffering == wal.BufferMemory {
		spool = wal.SpoolBytes(a.Cfg.WalSegmentSize())
	}
	return buffering, spool, facts, nil
}

// memoryFacts gathers what each configured component states about its
// memory: every process's memory plan is built from these.
func (a *app) memoryFacts(method codec.Method, cr crypt.Crypter) (memplan.Facts, error) {
	w, _ := codec.MemoryEstimate(method)
	f := memplan.Facts{Codec: memplan.Codec{Name: method.Name(), Writer: w}}
	// Objects are decoded by their extension, whatever the configuration
	// writes: the decoder is the largest any method needs (decode-only
	// ones included).
	for _, ext := range codec.ProbeExts() {
		m, err := codec.ByExt(ext)
		if err != nil {
			return f, fmt.Errorf("memory plan: codec for .%s: %w", ext, err)
		}
		if _, r := codec.MemoryEstimate(m); r > f.Decoder.Reader {
			f.Decoder = memplan.Codec{Name: m.Name(), Reader: r}
		}
	}
	if cr != nil {
		ew, er := crypt.MemoryEstimate(cr)
		f.Crypter = memplan.Crypter{Name: cr.Name(), Writer: ew, Reader: er}
	}
	b, err := a.Cfg.Storage()
	if err != nil {
		return f, err
	}
	all := []memplan.Storage{b.Memory}
	for _, fo := range a.Cfg.FailoverStorages() {
		all = append(all, fo.Storage.Memory)
	}
	f.Storage = memplan.Widest(all...)
	return f, nil
}

// applyMemoryPlan sets the collector's limit (GOMEMLIMIT) and target (GOGC)
// from a long-running command's plan, unless the environment sets them,
// and returns the GOGC in force.
func applyMemoryPlan(plan *memplan.Plan) (gogc string) {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(plan.HeapLimit())
	}
	gogc = os.Getenv("GOGC")
	if gogc == "" {
		gogc = strconv.Itoa(plan.GCPercent())
		debug.SetGCPercent(plan.GCPercent())
	}
	return gogc
}
