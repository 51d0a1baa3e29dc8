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
	upload := f.Codec.Writer + d.CopyBuffer + f.Storage.Upload + f.Crypter.Writer
	note := "codec " + f.Codec.Name + ", " + d.Buffering
	if f.encrypted() {
		note += ", " + f.Crypter.Name
	}
	p.Add("upload worker", d.Workers, upload, note)
	if d.Spool > 0 {
		p.Add("upload spool (buffering "+d.Buffering+")", d.Workers, d.Spool, "the encoded WAL file, held until sent")
	}
	p.Add("client request in flight", d.Requests, d.RequestBytes, "TUSK_DAEMON_MAX_CONNECTIONS: frame buffer and state")
	p.Add("open client connection", d.OpenConns, d.ConnBytes, "goroutine and socket; quiet ones hold no buffer")
	download := f.Decoder.Reader + d.CopyBuffer + f.Storage.Download + f.Crypter.Reader
	p.Add("wal-fetch download", 1, download, "decoder: the largest of any method ("+f.Decoder.Name+")")
	if d.Prefetch > 1 {
		p.Add("prefetch download", min(d.Prefetch, d.PrefetchWorkers), download,
			fmt.Sprintf("WALG_DOWNLOAD_CONCURRENCY, at most %d at once", d.PrefetchWorkers))
	}
	return p
}
