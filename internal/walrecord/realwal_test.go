package walrecord

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/pg"
	"github.com/tusk-pg/tusk/internal/testenv/pgcluster"
)

// TestRealWAL decodes the WAL that PostgreSQL 13 to 18 write, 1 MiB
// segments, across a timeline switch (archive recovery ending in
// promotion): every restore point is found with its name and a time from
// the test's clock, commits have times, a logical message larger than a
// segment is read whole, and the record chain (xl_prev, CRC) holds from
// the first segment to the end of written WAL.
func TestRealWAL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL servers")
	}
	majors := []int{13, 14, 15, 16, 17, 18}
	magics := make([]uint16, len(majors))
	t.Run("versions", func(t *testing.T) {
		for i, major := range majors {
			t.Run(fmt.Sprintf("pg%d", major), func(t *testing.T) {
				t.Parallel() // each its own server
				magics[i] = realWAL(t, major)
			})
		}
	})
	if t.Failed() {
		return
	}
	// Versions whose binaries are not installed were skipped (0).
	magics = slices.DeleteFunc(magics, func(m uint16) bool { return m == 0 })
	if !slices.IsSorted(magics) {
		t.Errorf("page magics %x do not increase with the version", magics)
	}
}

func realWAL(t *testing.T, major int) uint16 {
	const segSize = 1 << 20
	c := pgcluster.New(t, pgcluster.Options{
		BinDir:       pgcluster.BinDirFor(t, major),
		WALSegSizeMB: 1,
		// Keep every segment in pg_wal for the reader.
		Conf: []string{"wal_keep_size = '1GB'"},
	})
	c.Start()
	before := time.Now().Add(-time.Second)
	c.Exec(`create table t (id int primary key, body text);
		insert into t select g, md5(g::text) from generate_series(1, 2000) g`)
	c.Exec(`select pg_create_restore_point('rp_one')`)
	// One record of 1.5 segments.
	c.Exec(`select pg_logical_emit_message(true, 'big', repeat('x', 1500000))`)
	c.Exec(`update t set body = body || 'x' where id < 100`)
	c.Exec(`select pg_create_restore_point('rp_two')`)
	c.Stop()

	// Archive recovery with nothing to restore ends at the end of pg_wal
	// and promotes: timeline 2 begins in the middle of a segment.
	c.WriteDataFile("recovery.signal", nil)
	c.WriteDataFile("postgresql.auto.conf", []byte("restore_command = '/bin/false'\n"))
	c.Start()
	c.WaitRecoveryDone(time.Minute)
	c.Exec(`insert into t values (100001, 'on timeline 2')`)
	c.Exec(`select pg_create_restore_point('rp_tl2')`)
	c.Exec(`insert into t values (100002, 'after')`)
	after := time.Now().Add(time.Second)
	c.Stop()

	// For each segment number the newest timeline's file, as recovery
	// along timeline 2 would read them.
	files, err := os.ReadDir(filepath.Join(c.DataDir(), "pg_wal"))
	if err != nil {
		t.Fatal(err)
	}
	segRE := regexp.MustCompile(`^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$`)
	pick := map[uint64]string{}
	tlis := map[uint64]uint32{}
	for _, f := range files {
		m := segRE.FindStringSubmatch(f.Name())
		if m == nil {
			continue
		}
		tli, _ := strconv.ParseUint(m[1], 16, 32)
		hi, _ := strconv.ParseUint(m[2], 16, 32)
		lo, _ := strconv.ParseUint(m[3], 16, 32)
		no := hi*(1<<32/segSize) + lo
		if uint32(tli) >= tlis[no] {
			pick[no], tlis[no] = f.Name(), uint32(tli)
		}
	}
	nos := make([]uint64, 0, len(pick))
	for no := range pick {
		nos = append(nos, no)
	}
	slices.Sort(nos)
	if len(nos) == 0 || tlis[nos[len(nos)-1]] != 2 {
		t.Fatalf("pg_wal holds %v: want timeline 2 segments", pick)
	}

	var recs []Record
	var breaks []pg.LSN
	var why []error
	rps := map[string]time.Time{}
	var rpOrder []string
	commits, big := 0, 0
	var magic uint16
	tl2Start := pg.LSN(0)
	d, err := NewDecoder(Options{
		SegmentSize: segSize,
		OnRecord: func(r *Record) error {
			magic = r.Magic
			if len(breaks) > 0 {
				t.Errorf("record %s after the break at %s (%v)", r.LSN, breaks[0], why[0])
			}
			if r.TotLen > segSize {
				big++
			}
			if name, at, ok, err := r.RestorePoint(); ok {
				if err != nil {
					t.Errorf("record %s: %v", r.LSN, err)
				}
				rps[name] = at
				rpOrder = append(rpOrder, name)
				if name == "rp_tl2" && r.LSN < tl2Start {
					t.Errorf("rp_tl2 at %s, before timeline 2's first segment %s", r.LSN, tl2Start)
				}
			}
			if _, at, ok, err := r.XactTime(); ok {
				if err != nil {
					t.Errorf("record %s: %v", r.LSN, err)
				}
				if at.After(before) && at.Before(after) {
					commits++
				}
			}
			recs = append(recs, Record{LSN: r.LSN, End: r.End})
			return nil
		},
		OnBreak: func(at pg.LSN, reason error) {
			breaks = append(breaks, at)
			why = append(why, reason)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, no := range nos {
		if i > 0 && no != nos[i-1]+1 {
			t.Fatalf("pg_wal lacks segments between %s and %s", pick[nos[i-1]], pick[no])
		}
		if tlis[no] == 2 && tl2Start == 0 {
			tl2Start = pg.LSN(no * segSize)
		}
		f, err := os.Open(filepath.Join(c.DataDir(), "pg_wal", pick[no]))
		if err != nil {
			t.Fatal(err)
		}
		err = d.Segment(no, f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("PostgreSQL %d: page magic %#04x, %d records in %d segments, %d commits, restore points %v, first break %v",
		major, magic, len(recs), len(nos), commits, rpOrder, why)
	if !slices.Equal(rpOrder, []string{"rp_one", "rp_two", "rp_tl2"}) {
		t.Errorf("restore points %v, want rp_one, rp_two, rp_tl2", rpOrder)
	}
	for name, at := range rps {
		if at.Before(before) || at.After(after) {
			t.Errorf("restore point %s at %v, not between %v and %v", name, at, before, after)
		}
	}
	if commits < 5 {
		t.Errorf("%d commits timed during the test, want at least 5", commits)
	}
	if big != 1 {
		t.Errorf("%d records larger than a segment, want 1", big)
	}
	if len(recs) < 100 || recs[0].LSN >= pg.LSN((nos[0]+1)*segSize) {
		t.Errorf("%d records from %s: want the WAL from the first segment in pg_wal, %s", len(recs), recs[0].LSN, pick[nos[0]])
	}
	if len(breaks) == 0 || breaks[0] < recs[len(recs)-1].End {
		t.Errorf("breaks %v: want the end of WAL after the last record %s", why, recs[len(recs)-1].End)
	}
	return magic
}
