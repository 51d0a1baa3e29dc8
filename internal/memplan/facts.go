package memplan

// The facts plans are built from. Each component states its memory once,
// where it is implemented (codec.MemoryEstimate, crypt.MemoryEstimate, a
// storage backend's Memory), and every process's plan below combines the
// same facts; a new codec or backend appears in every plan by stating its
// own.

// Codec is what one compressor (Writer) and one decompressor (Reader) hold
// over a stream of any length.
type Codec struct {
	Name           string
	Writer, Reader int64
}

// Crypter is what one encrypting writer and one decrypting reader hold;
// the zero value is no encryption.
type Crypter struct {
	Name           string
	Writer, Reader int64
}

// Storage is what a backend holds.
type Storage struct {
	Name string
	// Upload and Download are held per request in flight, beyond its
	// body: connection and TLS buffers, client state, a copy buffer.
	Upload, Download int64
	// UnknownSize is what one upload of a body of unknown length (or one
	// that cannot seek) buffers; UnknownSizeTotal caps all of them
	// together (0: no shared cap).
	UnknownSize      int64
	UnknownSizeTotal int64
	Note             string
}

// Widest is the storage facts that cover every one of ss: each field the
// largest of any (with failover storages a process may use any of them,
// one at a time per request).
func Widest(ss ...Storage) Storage {
	var out Storage
	for i, s := range ss {
		if i == 0 {
			out = s
			continue
		}
		out.Name += ", " + s.Name
		out.Upload = max(out.Upload, s.Upload)
		out.Download = max(out.Download, s.Download)
		out.UnknownSize = max(out.UnknownSize, s.UnknownSize)
		out.UnknownSizeTotal = max(out.UnknownSizeTotal, s.UnknownSizeTotal)
		if s.Note != "" && s.Note != out.Note {
			out.Note += "; " + s.Note
		}
	}
	return out
}

// Facts are the components a process is built from.
type Facts struct {
	// Codec is the configured method: its Writer compresses what is
	// stored.
	Codec Codec
	// Decoder is the largest reader of any method: objects are decoded by
	// their extension, whatever the configuration writes.
	Decoder Codec
	Crypter Crypter
	Storage Storage
}

// encrypted reports whether a crypter is configured.
func (f Facts) encrypted() bool { return f.Crypter.Name != "" }
