package memplan

// Copy is what tusk copy and tusk st copy add to the facts of their two
// storages: Workers objects streamed at once, each through one download
// from the source and one upload to the target, and a batch of keys
// checked against the target.
type Copy struct {
	Workers int
	// Batch is the candidate keys held at once.
	Batch int64
	// Decrypt and Encrypt are st copy's --decrypt-source (with the source's
	// crypter) and --encrypt-source (with the target's); Transform is the
	// copy buffer a re-encrypted object goes through.
	Decrypt, Encrypt Crypter
	Transform        int64
}

// CopyPlan is the memory plan of a copy from one storage to another. The
// target's upload buffers count in full: a downloaded body cannot seek, so
// a backend that must know a body's length (S3) buffers it.
func CopyPlan(from, to Storage, c Copy) *Plan {
	n := max(c.Workers, 1)
	p := &Plan{Process: "tusk copy"}
	if from.Download > 0 {
		p.Add(from.Name+" download (source)", n, from.Download, "one object in flight per worker")
	}
	if to.Upload > 0 {
		p.Add(to.Name+" upload (target)", n, to.Upload, to.Note)
	}
	if to.UnknownSize > 0 {
		if all := int64(n) * to.UnknownSize; to.UnknownSizeTotal > 0 && to.UnknownSizeTotal < all {
			p.Add("upload buffers (shared pool)", 1, to.UnknownSizeTotal, to.Note)
		} else {
			p.Add("upload buffers", n, to.UnknownSize, to.Note)
		}
	}
	if c.Decrypt.Name != "" {
		p.Add("decryption ("+c.Decrypt.Name+")", n, c.Decrypt.Reader, "--decrypt-source")
	}
	if c.Encrypt.Name != "" {
		p.Add("encryption ("+c.Encrypt.Name+")", n, c.Encrypt.Writer, "--encrypt-source")
	}
	if c.Decrypt.Name != "" || c.Encrypt.Name != "" {
		p.Add("re-encryption copy buffer", n, c.Transform, "")
	}
	p.Add("key batch", 1, c.Batch, "candidate keys checked against the target at once")
	return p
}
