package e2e

import (
	"strings"
	"testing"

	"github.com/tusk-pg/tusk/internal/testenv"
	"github.com/tusk-pg/tusk/internal/testenv/s3server"
)

// TestArchiveBinaryS3: tusk-archive as archive_command of a PostgreSQL 15
// primary, to versitygw over TLS, and tusk's wal-fetch replaying what it
// archived: the two binaries write and read the same objects. Then
// tusk-archive's own wal-fetch of one segment, and its refusal of a storage
// it does not link, in one line naming the setting.
func TestArchiveBinaryS3(t *testing.T) {
	t.Parallel()
	tusk, archive := testenv.BuildTusk(t), testenv.BuildArchive(t)
	srv := s3server.Start(t, s3server.Options{TLS: true, Prefix: "clusters/archive"})
	out := archiveRestore(t, tusk, scenario{
		env:            srv.Env(),
		load:           lightLoad,
		archiveCommand: archive + " wal-push %p",
	})
	checkWALObjects(t, walObjectsInS3(t, srv, "clusters/archive/wal_005/"), "lz4", false, 0, out.lastWAL)

	dest := t.TempDir() + "/" + out.lastWAL
	if r := runTusk(t, archive, srv.Env(), "wal-fetch", out.lastWAL, dest); r.code != 0 {
		t.Errorf("tusk-archive wal-fetch %s: exit %d\n%s", out.lastWAL, r.code, r.output)
	}
	if r := runTusk(t, archive, srv.Env(), "wal-fetch", "00000001000000FF000000FF", dest+".absent"); r.code != 74 {
		t.Errorf("tusk-archive wal-fetch of a segment not archived: exit %d, want 74\n%s", r.code, r.output)
	}

	r := runTusk(t, archive, []string{"WALG_GS_PREFIX=gs://bucket/p"}, "wal-push", "pg_wal/000000010000000000000001")
	if r.code != 1 || strings.Count(strings.TrimSpace(r.output), "\n") != 0 ||
		!strings.Contains(r.output, "WALG_GS_PREFIX") || !strings.Contains(r.output, "use tusk") {
		t.Errorf("tusk-archive with GCS storage: exit %d, want 1 and one line naming WALG_GS_PREFIX\n%s", r.code, r.output)
	}
}
