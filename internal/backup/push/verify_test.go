package push

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/tusk-pg/tusk/internal/testenv/pgcluster"
)

// TestPageChecksumMatchesPostgres checks the checksum against pages
// PostgreSQL itself wrote: initdb --data-checksums sets one on every page.
func TestPageChecksumMatchesPostgres(t *testing.T) {
	c := pgcluster.New(t, pgcluster.Options{DataChecksums: true})
	dir := filepath.Join(c.DataDir(), "base", "1")
	names, err := readDirNames(dir)
	if err != nil {
		t.Fatal(err)
	}
	const bs = 8192
	checked := 0
	var sample []byte
	for _, n := range names {
		rf, ok := parseRelFile(n)
		if !ok || rf.fork != "" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		if len(data)%bs != 0 {
			t.Fatalf("%s: size %d", n, len(data))
		}
		v := &pageVerifier{blockSize: bs, startLSN: ^uint64(0)}
		v.inspect(0, data)
		if len(v.corrupt) != 0 {
			t.Errorf("%s: blocks %v fail verification", n, v.corrupt)
		}
		for i := 0; i+bs <= len(data); i += bs {
			if binary.LittleEndian.Uint16(data[i+pageUpperOffset:]) != 0 {
				checked++
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
		if checkPage(p, 0, ^uint64(0)) != pageBad {
			t.Errorf("bit flip at %d not detected", off)
		}
	}
	if checkPage(sample, 1, ^uint64(0)) != pageBad {
		t.Error("page checked as block 1 passes")
	}
	// Pages written after the backup started are not judged.
	if lsn := uint64(binary.LittleEndian.Uint32(sample[0:]))<<32 | uint64(binary.LittleEndian.Uint32(sample[4:])); true {
		p := append([]byte(nil), sample...)
		p[100] ^= 1
		if checkPage(p, 0, lsn) != pageSkipped {
			t.Error("a page at the start LSN was judged")
		}
		if checkPage(p, 0, lsn+1) != pageBad {
			t.Error("a page before the start LSN was not judged")
		}
	}
	// New pages have no checksum.
	if checkPage(make([]byte, bs), 0, ^uint64(0)) != pageSkipped {
		t.Error("all-zero page judged")
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
		binary.LittleEndian.PutUint16(p[pageUpperOffset:], 0x1000)
		binary.LittleEndian.PutUint16(p[pageChecksumOffset:], pageChecksum(p, blk))
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
	v := &pageVerifier{blockSize: bs, firstBlock: first, startLSN: 1 << 40,
		reread: func(p []byte, off int64) error { copy(p, disk[off:]); return nil }}
	v.inspect(0, file[:2*bs])
	v.inspect(2*bs, file[2*bs:])
	if len(v.corrupt) != 1 || v.corrupt[0] != 3 {
		t.Errorf("corrupt %v, want [3]", v.corrupt)
	}
	cb := corruptBlocks([]uint32{30, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, false)
	if cb.CorruptBlocksCount != 12 || len(cb.SomeCorruptBlocks) != 10 || cb.SomeCorruptBlocks[0] != 1 {
		t.Errorf("%+v", cb)
	}
	if cb := corruptBlocks([]uint32{3, 1}, true); len(cb.SomeCorruptBlocks) != 2 || corruptBlocks(nil, true) != nil {
		t.Errorf("%+v", cb)
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
		checkPage(data, blk, ^uint64(0)) // never panics, whatever the bytes
		if len(data) < pageHeaderSize || len(data)%128 != 0 {
			return
		}
		// With its checksum set, any initialised page passes.
		p := append([]byte(nil), data...)
		if binary.LittleEndian.Uint16(p[pageUpperOffset:]) == 0 {
			p[pageUpperOffset] = 1
		}
		binary.LittleEndian.PutUint64(p[0:], 0)
		binary.LittleEndian.PutUint16(p[pageChecksumOffset:], pageChecksum(p, blk))
		if checkPage(p, blk, 1) != pageOK {
			t.Fatal("page with its own checksum fails")
		}
		v := &pageVerifier{blockSize: len(p), firstBlock: blk, startLSN: 1}
		v.inspect(0, p)
		if len(v.corrupt) != 0 {
			t.Fatal("verifier rejects a good page")
		}
	})
}
