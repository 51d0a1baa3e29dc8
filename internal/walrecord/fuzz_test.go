package walrecord

import (
	"bytes"
	"testing"

	"github.com/tusk-pg/tusk/internal/pg"
)

// FuzzDecoder feeds arbitrary bytes as consecutive 8 KiB segments of
// 1 KiB pages: the decoder must not panic, must hand over records in
// increasing LSN order with at most KeepBytes kept, and the record
// accessors must not panic on whatever a record holds.
func FuzzDecoder(f *testing.F) {
	b, _, _ := layoutWAL()
	f.Add(bytes.Join(b.finish(), nil))
	g := newWALBuilder(0, testSeg, testBlock)
	g.commit(t0)
	g.restorePoint("x", t0)
	f.Add(bytes.Join(g.finish(), nil))
	const keep = 256
	f.Fuzz(func(t *testing.T, data []byte) {
		var last pg.LSN
		d, err := NewDecoder(Options{
			SegmentSize: testSeg,
			KeepBytes:   keep,
			OnRecord: func(r *Record) error {
				if r.LSN <= last && last != 0 {
					t.Fatalf("record %s after %s", r.LSN, last)
				}
				last = r.LSN
				if len(r.Data) > keep || len(r.Data) > int(r.TotLen) || r.End <= r.LSN {
					t.Fatalf("record %s: %d bytes kept of %d, end %s", r.LSN, len(r.Data), r.TotLen, r.End)
				}
				_, _ = r.MainData()
				_, _, _, _ = r.RestorePoint()
				_, _, _, _ = r.XactTime()
				return nil
			},
			OnBreak: func(pg.LSN, error) {},
		})
		if err != nil {
			t.Fatal(err)
		}
		for seg := uint64(0); len(data) > 0; seg++ {
			n := min(len(data), testSeg)
			_ = d.Segment(seg, bytes.NewReader(data[:n]))
			data = data[n:]
		}
	})
}
