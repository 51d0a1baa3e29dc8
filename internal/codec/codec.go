// Package codec holds the compression methods WAL-G writes and reads, with
// exactly its container formats and object-key extensions.
//
// Every writer and reader here is single-goroutine and has a documented memory
// bound (see MemoryEstimate): no codec starts goroutines, and buffers are sized
// by fixed settings or by a capped value from the stream header, never by the
// length of the input.
package codec

import (
	"fmt"
	"io"
	"strings"
)

// Method is one compression method.
type Method interface {
	// Name is the WALG_COMPRESSION_METHOD value ("lz4", "zstd", ...). The
	// decompress-only methods are named "gzip" and "lzo".
	Name() string
	// Ext is the object-key extension without the dot; "" for none.
	Ext() string
	// NewWriter returns a compressing writer over w. Close flushes the stream
	// but does not close w. Every writer of this package implements
	// Resetter: after Close, Reset starts the next stream with the same
	// settings and, where the library allows, the same buffers.
	// Decompress-only methods return an error.
	NewWriter(w io.Writer) (io.WriteCloser, error)
	// NewReader returns a decompressing reader over r. Nothing is read from
	// r until the first Read. Every reader of this package implements
	// ReadResetter. Close releases the reader; it does not close r.
	NewReader(r io.Reader) (io.ReadCloser, error)
}

// Resetter is implemented by writers that can be reused for another stream,
// so long-lived workers keep one encoder instead of allocating per object.
// Call Close to finish a stream, then Reset to begin the next one.
type Resetter interface {
	Reset(w io.Writer)
}

// ReadResetter is implemented by readers that can be reused for another
// stream. Reset discards the current stream; the reader must not have been
// closed.
type ReadResetter interface {
	Reset(r io.Reader) error
}

// Method names, as accepted in WALG_COMPRESSION_METHOD.
const (
	LZ4    = "lz4"
	LZMA   = "lzma"
	Zstd   = "zstd"
	Brotli = "brotli"
	None   = "none"
	// Decompress-only methods; ByName rejects them.
	Gzip = "gzip"
	LZO  = "lzo"
)

// DefaultMethod is used when WALG_COMPRESSION_METHOD is unset.
const DefaultMethod = LZ4

// Methods lists the WALG_COMPRESSION_METHOD values, the methods WAL-G can
// compress with, in the order messages show them. The settings catalogue
// takes its list from here.
func Methods() []string { return []string{LZ4, LZMA, Zstd, Brotli, None} }

// ByName returns a compression method by its WALG_COMPRESSION_METHOD name.
// zstd gets the default level; use NewZstd or FromConfig for another.
func ByName(name string) (Method, error) {
	switch name {
	case LZ4:
		return lz4Method{}, nil
	case LZMA:
		return lzmaMethod{}, nil
	case Zstd:
		return zstdMethod{level: ZstdDefault}, nil
	case Brotli:
		return brotliMethod{}, nil
	case None:
		return noneMethod{}, nil
	}
	return nil, fmt.Errorf("WALG_COMPRESSION_METHOD: unknown method %q (accepted: %s)",
		name, strings.Join(Methods(), ", "))
}

// FromConfig resolves the settings WALG_COMPRESSION_METHOD and
// WALG_ZSTD_LEVEL together. An empty method means the default (lz4); an
// empty level means unset. As in WAL-G, setting a zstd level with any other
// method is an error.
func FromConfig(method, zstdLevel string) (Method, error) {
	if method == "" {
		method = DefaultMethod
	}
	m, err := ByName(method)
	if err != nil {
		return nil, err
	}
	if zstdLevel == "" {
		return m, nil
	}
	if method != Zstd {
		return nil, fmt.Errorf("WALG_ZSTD_LEVEL is set to %q but WALG_COMPRESSION_METHOD is %q: the level applies to zstd only",
			zstdLevel, method)
	}
	level, err := ParseZstdLevel(zstdLevel)
	if err != nil {
		return nil, err
	}
	return NewZstd(level), nil
}

// ByExt returns the method that reads objects with the given key extension
// (without the dot). "" is the none method. This includes the
// decompress-only methods gz and lzo.
func ByExt(ext string) (Method, error) {
	switch ext {
	case "lz4":
		return lz4Method{}, nil
	case "lzma":
		return lzmaMethod{}, nil
	case "zst":
		return zstdMethod{level: ZstdDefault}, nil
	case "br":
		return brotliMethod{}, nil
	case "":
		return noneMethod{}, nil
	case "gz":
		return gzipMethod{}, nil
	case "lzo":
		return lzoMethod{}, nil
	}
	return nil, fmt.Errorf("no decompressor for object-key extension %q (known: lz4, lzma, zst, br, gz, lzo, none)", ext)
}

// ProbeExts returns the extensions a release WAL-G binary tries, in order,
// when it fetches an object by base name (wal-fetch, wal-prefetch, delta
// sidecars). "" is the none method, whose key is "<name>." with a trailing
// dot. After all of them WAL-G tries the bare name; see Candidates.
func ProbeExts() []string {
	return []string{"lz4", "lzma", "gz", "", "br", "lzo", "zst"}
}

// Candidate is one object key to try when fetching by base name.
type Candidate struct {
	Key    string
	Method Method
	// Bare marks the final candidate: the name with no extension. WAL-G
	// only decrypts such an object; Method is then the none method.
	Bare bool
}

// Candidates returns the keys to try, in order, for an object known by its
// base name (e.g. "wal_005/000000010000000000000001"): one per ProbeExts
// entry, then the bare name. If preferred is not nil (WAL-G keeps the last
// successful extension in ~/.walg_decompressor_cache), its key moves to the
// front. The first key that exists wins; a storage error other than "not
// found" should abort the probing.
func Candidates(base string, preferred Method) []Candidate {
	exts := ProbeExts()
	out := make([]Candidate, 0, len(exts)+1)
	if preferred != nil {
		if m, err := ByExt(preferred.Ext()); err == nil {
			out = append(out, Candidate{Key: base + "." + m.Ext(), Method: m})
		}
	}
	for _, ext := range exts {
		if preferred != nil && ext == preferred.Ext() {
			continue
		}
		m, err := ByExt(ext)
		if err != nil {
			// ProbeExts only holds known extensions.
			panic(err)
		}
		out = append(out, Candidate{Key: base + "." + ext, Method: m})
	}
	return append(out, Candidate{Key: base, Method: noneMethod{}, Bare: true})
}

// Key returns the object key WAL-G writes for base compressed with m:
// "<base>.<ext>", or base alone for none (no dot).
func Key(base string, m Method) string {
	if m.Ext() == "" {
		return base
	}
	return base + "." + m.Ext()
}

// ExtOf returns the extension of an object key as WAL-G sees it: the text
// after the last dot of the last path element, "" if there is none.
func ExtOf(key string) string {
	name := key[strings.LastIndexByte(key, '/')+1:]
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		return name[i+1:]
	}
	return ""
}
