package e2e

import (
	"strings"
	"testing"

	"github.com/tusk-pg/tusk/internal/testenv"
	"github.com/tusk-pg/tusk/internal/testenv/pgcluster"
)

// What a new user meets first, through the built binary: argument errors
// with the usage line, WAL-G commands tusk lacks named as such, and a
// backup of a stopped server failing with its error alone, no summary of
// zero bytes.
func TestFirstHourErrors(t *testing.T) {
	t.Parallel()
	tusk := testenv.BuildTusk(t)

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"wal-push"}, "ERROR: wal-push: takes 1 argument, got 0\nUsage: tusk wal-push WAL_FILE_PATH [flags]\n"},
		{[]string{"pgbackrest", "backup-list"}, "ERROR: WAL-G's \"pgbackrest\" is not implemented in tusk yet\n"},
	} {
		res := runTusk(t, tusk, nil, tc.args...)
		if res.code != 1 || res.output != tc.want {
			t.Errorf("tusk %s: exit %d, %q; want exit 1, %q", strings.Join(tc.args, " "), res.code, res.output, tc.want)
		}
	}

	// delete exists: a dry run on an empty repository succeeds.
	if res := runTusk(t, tusk, []string{"WALG_FILE_PREFIX=" + t.TempDir()}, "delete", "retain", "2"); res.code != 0 {
		t.Errorf("delete retain 2: exit %d\n%s", res.code, res.output)
	}

	// A cluster that is not running.
	c := pgcluster.New(t, pgcluster.Options{})
	env := append(c.ConnEnv(), "WALG_FILE_PREFIX="+pgcluster.TempDir(t))
	res := runAsServer(t, tusk, env, "backup-push", c.DataDir())
	if res.code != 1 || strings.Count(res.output, "ERROR: ") != 1 || !strings.Contains(res.output, "ERROR: connect to postgres") {
		t.Errorf("backup-push of a stopped server: exit %d\n%s", res.code, res.output)
	}
	for _, line := range strings.Split(res.output, "\n") {
		if strings.Contains(line, "backup-push: 0 B") || strings.Contains(line, " B in ") {
			t.Errorf("backup-push printed a summary of nothing: %q", line)
		}
	}
}
