package s3

import (
	"context"
)

// Buffers supplies the part buffers Put fills from a reader of unknown size
// (or one that cannot seek). A shared implementation with a global cap lets
// several storages and pipelines draw from one memory budget.
//
// Every buffer handed out must be at least Options.PartSize long, and comes
// back through Put exactly once.
type Buffers interface {
	// Get returns a buffer, waiting while none is free, until ctx is done.
	Get(ctx context.Context) ([]byte, error)
	// TryGet returns a buffer only if one is free now. Put uses it for its
	// second and later buffers, so that an upload holding one buffer never
	// waits for another (which could deadlock two uploads against a small
	// pool); without a second buffer it uploads and refills one.
	TryGet() ([]byte, bool)
	// Put returns a buffer.
	Put(b []byte)
}

// pool is the Storage's own Buffers: at most max buffers of size bytes,
// allocated on first demand and then reused for the Storage's lifetime.
type pool struct {
	size   int
	tokens chan struct{} // one per buffer ever allocated; caps the allocation
	free   chan []byte
}

func newPool(size, max int) *pool {
	return &pool{size: size, tokens: make(chan struct{}, max), free: make(chan []byte, max)}
}

func (p *pool) Get(ctx context.Context) ([]byte, error) {
	if b, ok := p.TryGet(); ok {
		return b, nil
	}
	select {
	case b := <-p.free:
		return b, nil
	case p.tokens <- struct{}{}:
		return make([]byte, p.size), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (p *pool) TryGet() ([]byte, bool) {
	// Prefer a buffer already allocated over allocating a new one.
	select {
	case b := <-p.free:
		return b, true
	default:
	}
	select {
	case b := <-p.free:
		return b, true
	case p.tokens <- struct{}{}:
		return make([]byte, p.size), true
	default:
		return nil, false
	}
}

func (p *pool) Put(b []byte) {
	// Never blocks: at most cap(tokens) buffers exist.
	p.free <- b[:cap(b)]
}
