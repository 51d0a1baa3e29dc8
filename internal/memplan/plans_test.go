package memplan

import "testing"

var facts = Facts{
	Codec:   Codec{Name: "lz4", Writer: 3 * MiB},
	Decoder: Codec{Name: "lzma", Reader: 9 * MiB},
	Crypter: Crypter{Name: "openpgp", Writer: 128 << 10, Reader: 64 << 10},
	Storage: Storage{Name: "S3", Upload: 256 << 10, Download: 200 << 10, UnknownSize: 40 * MiB, UnknownSizeTotal: 80 * MiB},
}

func item(t *testing.T, p *Plan, component string) Item {
	t.Helper()
	for _, it := range p.Items {
		if it.Component == component {
			return it
		}
	}
	t.Fatalf("%s: no %q in %+v", p.Process, component, p.Items)
	return Item{}
}

// Each component's fact lands in every plan that uses the component: the
// configured codec's writer in uploads, the largest decoder and the
// storage's download state in every download, the crypter both ways.
func TestPlansUseTheFacts(t *testing.T) {
	d := DaemonPlan(facts, Daemon{Workers: 3, Buffering: "memory", Spool: 19 * MiB, CopyBuffer: 64 << 10,
		Requests: 2, OpenConns: 10, RequestBytes: 80 << 10, ConnBytes: 8 << 10, Prefetch: 8, PrefetchWorkers: 4})
	if it := item(t, d, "upload worker"); it.Count != 3 || it.Each != 3*MiB+64<<10+256<<10+128<<10 {
		t.Errorf("upload worker %+v", it)
	}
	if it := item(t, d, "upload spool (buffering memory)"); it.Count != 3 || it.Each != 19*MiB {
		t.Errorf("spool %+v", it)
	}
	download := int64(9*MiB + 64<<10 + 200<<10 + 64<<10)
	if it := item(t, d, "wal-fetch download"); it.Each != download {
		t.Errorf("fetch %+v, want %d each", it, download)
	}
	if it := item(t, d, "prefetch download"); it.Count != 4 || it.Each != download {
		t.Errorf("prefetch %+v", it)
	}
	noSpool := DaemonPlan(facts, Daemon{Workers: 3, Buffering: "recompress"})
	for _, it := range noSpool.Items {
		if it.Component == "upload spool (buffering memory)" || it.Component == "prefetch download" {
			t.Errorf("%+v without a spool or prefetch", it)
		}
	}

	f := BackupFetchPlan(facts, BackupFetch{Workers: 5, CopyBuffer: 64 << 10, TarHeader: MiB, IncrementBlocks: MiB, IncrementMax: 16 * MiB, Catalog: MiB})
	if it := item(t, f, "decompressor (largest: lzma)"); it.Count != 5 || it.Each != 9*MiB {
		t.Errorf("decoder %+v", it)
	}
	if it := item(t, f, "decryption (openpgp)"); it.Each != 64<<10 {
		t.Errorf("decryption %+v", it)
	}
	if it := item(t, f, "S3 download"); it.Count != 5 || it.Each != 200<<10 {
		t.Errorf("download %+v", it)
	}
	plain := facts
	plain.Crypter = Crypter{}
	for _, it := range BackupFetchPlan(plain, BackupFetch{Workers: 1}).Items {
		if it.Component == "decryption ()" {
			t.Errorf("decryption without a crypter: %+v", it)
		}
	}
}

// The GC target puts the goal at the limit at the plan's live bound, and
// stays within sane bounds for tiny and huge plans.
func TestGCPercent(t *testing.T) {
	p := &Plan{}
	p.Add("x", 1, 64*MiB, "")
	// 64 MiB live: headroom 16 MiB + 6 MiB slack = 34%.
	if g := p.GCPercent(); g != 34 {
		t.Errorf("GCPercent %d for 64 MiB live, want 34", g)
	}
	small := &Plan{}
	small.Add("x", 1, MiB, "")
	if g := small.GCPercent(); g != 100 {
		t.Errorf("GCPercent %d for 1 MiB live, want 100", g)
	}
	if g := (&Plan{}).GCPercent(); g != 100 {
		t.Errorf("empty plan: %d", g)
	}
}

func TestWidest(t *testing.T) {
	got := Widest(
		Storage{Name: "file", Upload: 128 << 10, Note: "copy buffer"},
		Storage{Name: "s3", Upload: 64 << 10, Download: 32 << 10, UnknownSize: 20 << 20, UnknownSizeTotal: 100 << 20},
	)
	want := Storage{Name: "file, s3", Upload: 128 << 10, Download: 32 << 10, UnknownSize: 20 << 20, UnknownSizeTotal: 100 << 20, Note: "copy buffer"}
	if got != want {
		t.Errorf("Widest = %+v, want %+v", got, want)
	}
	if one := Widest(want); one != want {
		t.Errorf("Widest of one = %+v", one)
	}
}

// wal-receive collects at a quarter of its live heap, whatever the plan's bound:
// its committed memory is its heap's high-water mark.
func TestWalReceiveGCPercent(t *testing.T) {
	f := Facts{Codec: Codec{Name: "zstd", Writer: 3 * MiB}, Decoder: Codec{Name: "lzma", Reader: 9 * MiB}}
	p := WalReceivePlan(f, WalReceive{Buffering: "stream", CopyBuffer: 32 << 10, Message: 136 << 10})
	if g := p.GCPercent(); g != WalReceiveGCPercent {
		t.Errorf("wal-receive GCPercent %d, want %d", g, WalReceiveGCPercent)
	}
	// A plan tighter than a cap keeps its own target.
	big := &Plan{MaxGCPercent: 50}
	big.Add("x", 1, 64*MiB, "")
	if g := big.GCPercent(); g != 34 {
		t.Errorf("GCPercent %d for 64 MiB live under a cap of 50, want 34", g)
	}
}
