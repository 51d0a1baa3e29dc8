package pg

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ConnectReplication opens a physical replication connection
// (replication=true, walsender mode without a database) configured from the
// same PG* variables as Connect. Only replication commands (IDENTIFY_SYSTEM,
// CREATE_REPLICATION_SLOT, START_REPLICATION, TIMELINE_HISTORY, SHOW...) run
// on it.
func ConnectReplication(ctx context.Context, opts ConnectOptions) (*pgconn.PgConn, error) {
	cfg, err := pgconn.ParseConfig("replication=true")
	if err != nil {
		return nil, fmt.Errorf("postgres connection settings (PG* variables): %w", err)
	}
	if opts.AppName != "" {
		cfg.RuntimeParams["application_name"] = opts.AppName
	}
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open replication connection to postgres: %w", err)
	}
	return conn, nil
}

// PhysicalSlot is what pg_replication_slots says of one physical slot.
type PhysicalSlot struct {
	Exists bool
	// RestartLSN is the oldest WAL the slot keeps; 0 while the slot has
	// never been used (created without RESERVE_WAL).
	RestartLSN LSN
}

// PhysicalSlot looks a replication slot up by name. A slot of that name
// that is logical is an error: its positions mean something else.
func (c *Conn) PhysicalSlot(ctx context.Context, name string) (PhysicalSlot, error) {
	var kind string
	var restart *string
	err := c.queryRow(ctx, "read replication slot "+name,
		"SELECT slot_type, restart_lsn::text FROM pg_replication_slots WHERE slot_name = $1", []any{name}, &kind, &restart)
	if errors.Is(err, pgx.ErrNoRows) {
		return PhysicalSlot{}, nil
	}
	if err != nil {
		return PhysicalSlot{}, err
	}
	if kind != "physical" {
		return PhysicalSlot{}, fmt.Errorf("replication slot %s is %s, not physical (WALG_SLOTNAME)", name, kind)
	}
	s := PhysicalSlot{Exists: true}
	if restart != nil {
		if s.RestartLSN, err = ParseLSN(*restart); err != nil {
			return PhysicalSlot{}, fmt.Errorf("replication slot %s: restart_lsn: %w", name, err)
		}
	}
	return s, nil
}
