package pgdata

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/tusk-pg/tusk/internal/testenv/pgcluster"
)

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7) + byte(i>>9)
	}
	return b
}

// TestPageChecksumMatchesPostgres checks the checksum against pages
// PostgreSQL itself wrote: initdb --data-checksums sets one on every page.
func TestPageChecksumMatchesPostgres(t *testing.T) {
	c := pgcluster.New(t, pgcluster.Options{DataChecksums: true})
	dir := filepath.Join(c.DataDir(), "base", "1")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	const bs = 8192
	checked := 0
	var sample []byte
	for _, e := range ents {
		if _, ok := PagedFile("base/1/" + e.Name()); !ok {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if len(data)%bs != 0 {
			t.Fatalf("%s: size %d", e.Name(), len(data))
		}
		v := &PageVerifier{BlockSize: bs, StartLSN: ^uint64(0)}
		v.Inspect(0, data)
		if len(v.Corrupt) != 0 {
			t.Errorf("%s: blocks %v fail verification", e.Name(), v.Corrupt)
		}
		for i := 0; i+bs <= len(data); i += bs {
			if !PageIsNew(data[i:]) {
				checked++
				if !PageHeaderValid(data[i:i+bs], bs) {
					t.Errorf("%s block %d: header judged not valid", e.Name(), i/bs)
				}
				if sample == nil {
					sample = append([]byte(nil), data[i:i+bs]...)
				}
			}
		}
	}
	if checked < 100 {
		t.Fatalf("only %d initialised pages checked", checked)
	}
	t.Logf("%d pages verified", checked)

	// One flipped bit anywhere is found; the block number is part of the
	// checksum (a page moved to another block is corrupt).
	for _, off := range []int{4, 9, 100, bs - 1} { // LSN, pd_checksum, header, last byte
		p := append([]byte(nil), sample...)
		p[off] ^= 0x10
		if CheckPage(p, 0, ^uint64(0)) != PageBad {
			t.Errorf("bit flip at %d not detected", off)
		}
	}
	if CheckPage(sample, 1, ^uint64(0)) != PageBad {
		t.Error("page checked as block 1 passes")
	}
	// Pages written after the backup started are not judged.
	lsn := PageLSN(sample)
	p := append([]byte(nil), sample...)
	p[100] ^= 1
	if CheckPage(p, 0, lsn) != PageSkipped {
		t.Error("a page at the start LSN was judged")
	}
	if CheckPage(p, 0, lsn+1) != PageBad {
		t.Error("a page before the start LSN was not judged")
	}
	// New pages have no checksum.
	if CheckPage(make([]byte, bs), 0, ^uint64(0)) != PageSkipped {
		t.Error("all-zero page judged")
	}
	// The header rules reject what no server writes.
	bad := append([]byte(nil), sample...)
	binary.LittleEndian.PutUint16(bad[PageLowerOffset:], 4) // pd_lower inside the header
	if PageHeaderValid(bad, bs) {
		t.Error("pd_lower 4 passes the header rules")
	}
	if PageHeaderValid(sample, 4096) {
		t.Error("an 8 KiB page passes as a 4 KiB one")
	}
}

// TestPageVerifierReread: a page that fails once but reads back fine (a
// write caught mid-way) is not reported; one that fails twice is, with its
// block number relative to the file, and the segment offset applies.
func TestPageVerifierReread(t *testing.T) {
	const bs = 8192
	page := func(blk uint32, seed byte) []byte {
		p := pattern(bs, seed)
		binary.LittleEndian.PutUint32(p[0:], 0)
		binary.LittleEndian.PutUint32(p[4:], 0x100)
		binary.LittleEndian.PutUint16(p[PageUpperOffset:], 0x1000)
		binary.LittleEndian.PutUint16(p[PageChecksumOffset:], PageChecksum(p, blk))
		return p
	}
	const first = 131072 * 2 // segment .2
	var file []byte
	for i := range uint32(4) {
		file = append(file, page(first+i, byte(i))...)
	}
	good := append([]byte(nil), file...)
	file[1*bs+200] ^= 1 // torn in the first read only
	file[3*bs+200] ^= 1 // really corrupt
	disk := append([]byte(nil), good...)
	disk[3*bs+200] ^= 1
	v := &PageVerifier{BlockSize: bs, FirstBlock: first, StartLSN: 1 << 40,
		Reread: func(p []byte, off int64) error { copy(p, disk[off:]); return nil }}
	v.Inspect(0, file[:2*bs])
	v.Inspect(2*bs, file[2*bs:])
	if len(v.Corrupt) != 1 || v.Corrupt[0] != 3 {
		t.Errorf("corrupt %v, want [3]", v.Corrupt)
	}
}

func FuzzCheckPage(f *testing.F) {
	f.Add(make([]byte, 8192), uint32(0))
	f.Add(pattern(8192, 3), uint32(7))
	f.Add([]byte{1, 2, 3}, uint32(1))
	f.Fuzz(func(t *testing.T, data []byte, blk uint32) {
		if len(data) > 32768 {
			data = data[:32768]
		}
		CheckPage(data, blk, ^uint64(0)) // never panics, whatever the bytes
		if len(data) < PageHeaderSize || len(data)%128 != 0 {
			return
		}
		_ = PageHeaderValid(data, len(data))
		// With its checksum set, any initialised page passes.
		p := append([]byte(nil), data...)
		if PageIsNew(p) {
			p[PageUpperOffset] = 1
		}
		binary.LittleEndian.PutUint64(p[0:], 0)
		binary.LittleEndian.PutUint16(p[PageChecksumOffset:], PageChecksum(p, blk))
		if CheckPage(p, blk, 1) != PageOK {
			t.Fatal("page with its own checksum fails")
		}
		v := &PageVerifier{BlockSize: len(p), FirstBlock: blk, StartLSN: 1}
		v.Inspect(0, p)
		if len(v.Corrupt) != 0 {
			t.Fatal("verifier rejects a good page")
		}
	})
}
