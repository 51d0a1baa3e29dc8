package main

import (
	"fmt"

	"github.com/tusk-pg/tusk/internal/codec"
	"github.com/tusk-pg/tusk/internal/config"
	"github.com/tusk-pg/tusk/internal/crypt"
	"github.com/tusk-pg/tusk/internal/memplan"
	"github.com/tusk-pg/tusk/internal/storage"
	"github.com/tusk-pg/tusk/internal/storage/file"
)

// backend is what the configured storage states about itself, known
// without connecting (a memory plan works offline).
type backend struct {
	traits storage.Traits
	memory memplan.Storage
}

func (a *app) backend() (backend, error) {
	kind, _, err := a.cfg.StorageKind()
	if err != nil {
		return backend{}, err
	}
	switch kind {
	case config.StorageFile:
		return backend{file.Traits, file.Memory}, nil
	case config.StorageS3:
		opts, err := a.cfg.S3Options()
		if err != nil {
			return backend{}, err
		}
		return backend{opts.Traits(), opts.Memory()}, nil
	}
	return backend{}, fmt.Errorf("storage %q is not supported", kind)
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
	b, err := a.backend()
	if err != nil {
		return f, err
	}
	f.Storage = b.memory
	return f, nil
}
