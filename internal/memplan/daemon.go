package memplan

import "fmt"

// Daemon is what the WAL daemon adds to the facts.
type Daemon struct {
	// Workers upload at once (WALG_UPLOAD_CONCURRENCY), each with one
	// reusable encoder.
	Workers int
	// Buffering is how a WAL file reaches storage (wal.ChooseBuffering);
	// Spool is what one worker holds in memory for it ("memory"
	// buffering; 0 otherwise).
	Buffering string
	Spool     int64
	// CopyBuffer is the encoder's (and a download's) copy buffer.
	CopyBuffer int64
	// Requests are served at once (TUSK_DAEMON_MAX_CONNECTIONS), each
	// holding RequestBytes; at most OpenConns connections are open, each
	// holding ConnBytes.
	Requests, OpenConns     int
	RequestBytes, ConnBytes int64
	// Prefetch is WALG_DOWNLOAD_CONCURRENCY; at most PrefetchWorkers
	// prefetch downloads run at once.
	Prefetch, PrefetchWorkers int
}

// DaemonPlan is the daemon's memory plan.
func DaemonPlan(f Facts, d Daemon) *Plan {
	p := &Plan{Process: "tusk daemon"}
	addUploads(p, f, "upload worker", d.Workers, d.Buffering, d.Spool, d.CopyBuffer)
	p.Add("client request in flight", d.Requests, d.RequestBytes, "TUSK_DAEMON_MAX_CONNECTIONS: frame buffer and state")
	p.Add("open client connection", d.OpenConns, d.ConnBytes, "goroutine and socket; quiet ones hold no buffer")
	download := walDownload(f, d.CopyBuffer)
	p.Add("wal-fetch download", 1, download, "decoder: the largest of any method ("+f.Decoder.Name+")")
	if d.Prefetch > 1 {
		p.Add("prefetch download", min(d.Prefetch, d.PrefetchWorkers), download,
			fmt.Sprintf("WALG_DOWNLOAD_CONCURRENCY, at most %d at once", d.PrefetchWorkers))
	}
	return p
}

// addUploads adds n WAL uploads as wal.Archiver runs them: an encoder with
// its copy buffer and the storage client's share each, plus the encoded
// file when buffering keeps it in memory (spool > 0).
func addUploads(p *Plan, f Facts, what string, n int, buffering string, spool, copyBuffer int64) {
	note := "codec " + f.Codec.Name + ", " + buffering
	if f.encrypted() {
		note += ", " + f.Crypter.Name
	}
	p.Add(what, n, f.Codec.Writer+copyBuffer+f.Storage.Upload+f.Crypter.Writer, note)
	if spool > 0 {
		p.Add("upload spool (buffering "+buffering+")", n, spool, "the encoded WAL file, held until sent")
	}
}

// walDownload is one archived WAL file read back: decoder, copy buffer,
// the storage client's share and decryption.
func walDownload(f Facts, copyBuffer int64) int64 {
	return f.Decoder.Reader + copyBuffer + f.Storage.Download + f.Crypter.Reader
}

// WalReceive is what wal-receive adds to the facts.
type WalReceive struct {
	// Buffering, Spool and CopyBuffer are as in Daemon, for its one
	// upload at a time.
	Buffering  string
	Spool      int64
	CopyBuffer int64
	// Message is the largest replication message the connection holds
	// (the walsender sends at most 128 KiB of WAL in one).
	Message int64
}

// WalReceiveGCPercent caps wal-receive's GOGC. Its plan counts a decoder
// for the rare .history comparison (lzma's 9 MiB), so the plan's own
// target is 100 and garbage could double the few MiB that are live while
// a segment is stored; Go never unmaps heap, so that high-water mark is
// its committed memory for good. It reuses its encoder and buffers, so
// collecting at a quarter of the live heap costs little CPU. Measured over
// 60 s bursts of 7-10 MiB/s of WAL with zstd and libsodium: at 50 the heap
// still took a fourth 4 MiB step (86.8 MiB committed), at 25 it stayed
// within three (82.5-82.8 MiB), CPU per GiB of WAL no higher
// (docs/wal-receive.md, 2026-12-07 18:20 UTC).
const WalReceiveGCPercent = 25

// WalReceivePlan is wal-receive's memory plan: one upload at a time, the
// segment spooled on disk, never in memory.
func WalReceivePlan(f Facts, r WalReceive) *Plan {
	p := &Plan{Process: "tusk wal-receive", MaxGCPercent: WalReceiveGCPercent}
	addUploads(p, f, "upload", 1, r.Buffering, r.Spool, r.CopyBuffer)
	p.Add("replication message", 1, r.Message, "the stream's one read buffer; WAL goes from it to the spool file")
	p.Add("archived file read back", 1, walDownload(f, r.CopyBuffer),
		"the .history (and WALG_PREVENT_WAL_OVERWRITE) comparison; decoder "+f.Decoder.Name)
	return p
}
