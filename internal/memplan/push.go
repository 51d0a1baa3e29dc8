package memplan

// BackupPush is what backup-push adds to the facts, per tar builder (each
// reads, tars, compresses, encrypts and uploads one tar at a time, its
// buffers allocated once and reused).
type BackupPush struct {
	Builders int
	// PerBuilder are the push's own buffers, Once those it holds once.
	PerBuilder []Item
	Once       []Item
}

// BackupPushPlan is backup-push's memory plan.
func BackupPushPlan(f Facts, b BackupPush) *Plan {
	n := max(b.Builders, 1)
	p := &Plan{Process: "tusk backup-push"}
	for _, it := range b.PerBuilder {
		p.Add(it.Component, n, it.Each, it.Note)
	}
	p.Add("compressor ("+f.Codec.Name+")", n, f.Codec.Writer, "writer state, reused from tar to tar")
	if f.encrypted() {
		p.Add("encryption ("+f.Crypter.Name+")", n, f.Crypter.Writer, "")
	}
	if f.Storage.Upload > 0 {
		p.Add(f.Storage.Name+" upload", n, f.Storage.Upload, "one tar uploading per builder")
	}
	if f.Storage.UnknownSize > 0 {
		if all := int64(n) * f.Storage.UnknownSize; f.Storage.UnknownSizeTotal > 0 && f.Storage.UnknownSizeTotal < all {
			p.Add("upload buffers (shared pool)", 1, f.Storage.UnknownSizeTotal, f.Storage.Note)
		} else {
			p.Add("upload buffers", n, f.Storage.UnknownSize, f.Storage.Note)
		}
	}
	for _, it := range b.Once {
		p.Add(it.Component, it.Count, it.Each, it.Note)
	}
	return p
}
