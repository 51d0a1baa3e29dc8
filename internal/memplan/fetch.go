package memplan

import "fmt"

// BackupFetch is what backup-fetch adds to the facts: Workers tars
// streamed at once (WALG_DOWNLOAD_CONCURRENCY), each through a GET, the
// decryption, the decoder, the tar reader and a copy buffer.
type BackupFetch struct {
	Workers    int
	CopyBuffer int64
	// TarHeader is archive/tar's bound on one header it reads whole.
	TarHeader int64
	// IncrementBlocks is one delta increment's block list; IncrementMax
	// the most a hostile increment can declare.
	IncrementBlocks, IncrementMax int64
	// Catalog covers sentinels and tar listings.
	Catalog int64
}

// BackupFetchPlan is backup-fetch's memory plan. pg_control and
// backup_label are restored after the data tars, by one worker: no more.
func BackupFetchPlan(f Facts, b BackupFetch) *Plan {
	n := max(b.Workers, 1)
	p := &Plan{Process: "tusk backup-fetch"}
	p.Add("decompressor (largest: "+f.Decoder.Name+")", n, f.Decoder.Reader, "one per worker: WALG_DOWNLOAD_CONCURRENCY")
	if f.encrypted() {
		p.Add("decryption ("+f.Crypter.Name+")", n, f.Crypter.Reader, "")
	}
	p.Add("copy buffer", n, b.CopyBuffer, "")
	p.Add("tar reader headers", n, b.TarHeader, "archive/tar's bound on one PAX or GNU long-name header; WAL-G's tars use under 1 KiB")
	p.Add("delta increment block list", n, b.IncrementBlocks,
		fmt.Sprintf("delta backups: one increment of a 1 GiB segment; a hostile one can take up to %d MiB", b.IncrementMax>>20))
	if f.Storage.Download > 0 {
		p.Add(f.Storage.Name+" download", n, f.Storage.Download, "connection and TLS buffers, client state")
	}
	p.Add("sentinels and tar listings", 1, b.Catalog, "WAL-G's sentinels are a few KiB; an old one listing every file takes more")
	return p
}
