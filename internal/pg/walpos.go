package pg

import (
	"context"
	"errors"
)

// CurrentLSN is the cluster's current WAL position as WAL-G's wal-verify
// reads it: the write position on a primary, the last position received by
// streaming on a standby (an error when nothing was received, e.g. a
// standby that only restores from the archive).
func (c *Conn) CurrentLSN(ctx context.Context) (LSN, error) {
	var s *string
	err := c.queryRow(ctx, "read current WAL position",
		"SELECT CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_receive_lsn() ELSE pg_catalog.pg_current_wal_lsn() END::text",
		nil, &s)
	if err != nil {
		return 0, err
	}
	if s == nil {
		return 0, errors.New("read current WAL position: the standby has received no WAL by streaming (pg_last_wal_receive_lsn() is null)")
	}
	return ParseLSN(*s)
}
