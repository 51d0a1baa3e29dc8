package push

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/pg"
	"github.com/tusk-pg/tusk/internal/testenv/pgcluster"
)

// Stopping the liveness checks must not kill the backup session: a ping
// still running when the checks stop used to be cancelled, and pgx closes
// a connection whose query is cancelled, which aborted the backup at
// pg_backup_stop ("conn closed").
func TestWatchAliveStopKeepsSession(t *testing.T) {
	c := pgcluster.New(t, pgcluster.Options{})
	c.Start()
	setPGEnv(t, c)
	ctx := context.Background()
	conn, err := pg.Connect(ctx, pg.ConnectOptions{NoFallback: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	log := slog.New(slog.DiscardHandler)
	for i := range 300 {
		ctx, cancel := context.WithCancelCause(ctx)
		stop := watchAlive(ctx, conn, time.Microsecond, cancel, log)
		time.Sleep(time.Duration(i%7) * 100 * time.Microsecond)
		stop()
		if cause := context.Cause(ctx); cause != nil {
			t.Fatalf("round %d: the checks cancelled the backup: %v", i, cause)
		}
		cancel(nil)
		if err := conn.Ping(context.Background()); err != nil {
			t.Fatalf("round %d: the session died when the checks stopped: %v", i, err)
		}
	}
}
