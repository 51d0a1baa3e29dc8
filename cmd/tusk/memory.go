package main

import (
	"fmt"

	"github.com/tusk-pg/tusk/internal/codec"
	"github.com/tusk-pg/tusk/internal/crypt"
	"github.com/tusk-pg/tusk/internal/memplan"
)

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
	b, err := a.cfg.Storage()
	if err != nil {
		return f, err
	}
	f.Storage = b.Memory
	return f, nil
}
