package walrecord

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Resource managers and record kinds restore-window reads (rmgrlist.h,
// pg_control.h, xact.h).
const (
	RMXLog = 0
	RMXact = 1

	// infoMask is XLR_INFO_MASK: xl_info's low bits are the record
	// framework's; the rest is the resource manager's.
	infoMask = 0x0F

	xlogSwitch       = 0x40
	xlogRestorePoint = 0x70

	xactOpMask          = 0x70
	xactCommit          = 0x00
	xactAbort           = 0x20
	xactCommitPrepared  = 0x30
	xactAbortPrepared   = 0x40
	restorePointNameLen = 64 // MAXFNAMELEN
)

// Block reference layout (xlogrecord.h).
const (
	blockIDMax       = 32 // XLR_MAX_BLOCK_ID
	blockIDDataShort = 255
	blockIDDataLong  = 254
	blockIDOrigin    = 253
	blockIDTopXID    = 252

	bkpblockHasImage = 0x10
	bkpblockSameRel  = 0x80
	bimgHasHole      = 0x01
	// Image compression flags: PostgreSQL 13 and 14 had one bit, 15
	// added a bit per method and moved BKPIMAGE_APPLY.
	bimgCompressedPG13 = 0x02
	bimgCompressedPG15 = 0x04 | 0x08 | 0x10
	// pageMagicPG15 is the first page magic with the new flags.
	pageMagicPG15 = 0xD110
)

// ErrTruncated says the part of a record asked for lies beyond what the
// decoder kept (Options.KeepBytes).
var ErrTruncated = errors.New("record part beyond the bytes kept")

// MainData returns the record's main data (what XLogRegisterData wrote),
// after walking its block references as DecodeXLogRecord does. It returns
// ErrTruncated when the main data does not lie within the kept bytes.
func (r *Record) MainData() ([]byte, error) {
	d := r.Data
	if uint32(len(d)) > r.TotLen || len(d) < HeaderSize {
		return nil, fmt.Errorf("record at %s: %d bytes kept of %d", r.LSN, len(d), r.TotLen)
	}
	remaining := r.TotLen - HeaderSize
	var blockData, mainLen uint32
	pos := uint32(HeaderSize)
	need := func(n uint32) error {
		if remaining < n {
			return fmt.Errorf("record at %s: block headers overrun the record", r.LSN)
		}
		if pos+n > uint32(len(d)) {
			return ErrTruncated
		}
		return nil
	}
	for remaining > blockData {
		if err := need(1); err != nil {
			return nil, err
		}
		id := d[pos]
		pos++
		remaining--
		switch {
		case id == blockIDDataShort:
			if err := need(1); err != nil {
				return nil, err
			}
			mainLen = uint32(d[pos])
			pos++
			remaining--
		case id == blockIDDataLong:
			if err := need(4); err != nil {
				return nil, err
			}
			mainLen = binary.LittleEndian.Uint32(d[pos:])
			pos += 4
			remaining -= 4
		case id == blockIDOrigin:
			if err := need(2); err != nil {
				return nil, err
			}
			pos += 2
			remaining -= 2
			continue
		case id == blockIDTopXID:
			if err := need(4); err != nil {
				return nil, err
			}
			pos += 4
			remaining -= 4
			continue
		case id <= blockIDMax:
			if err := need(3); err != nil {
				return nil, err
			}
			forkFlags := d[pos]
			blockData += uint32(binary.LittleEndian.Uint16(d[pos+1:]))
			pos += 3
			remaining -= 3
			if forkFlags&bkpblockHasImage != 0 {
				if err := need(5); err != nil {
					return nil, err
				}
				blockData += uint32(binary.LittleEndian.Uint16(d[pos:]))
				bimgInfo := d[pos+4]
				pos += 5
				remaining -= 5
				compressed := bimgInfo&bimgCompressedPG13 != 0
				if r.Magic >= pageMagicPG15 {
					compressed = bimgInfo&bimgCompressedPG15 != 0
				}
				if bimgInfo&bimgHasHole != 0 && compressed {
					if err := need(2); err != nil {
						return nil, err
					}
					pos += 2
					remaining -= 2
				}
			}
			n := uint32(4) // BlockNumber
			if forkFlags&bkpblockSameRel == 0 {
				n += 12 // RelFileLocator
			}
			if err := need(n); err != nil {
				return nil, err
			}
			pos += n
			remaining -= n
			continue
		default:
			return nil, fmt.Errorf("record at %s: invalid block ID %d", r.LSN, id)
		}
		break // main data length read: the headers end here
	}
	if remaining != blockData+mainLen {
		return nil, fmt.Errorf("record at %s: %d bytes after the headers, blocks and main data need %d", r.LSN, remaining, blockData+mainLen)
	}
	start := r.TotLen - mainLen
	if start+mainLen > uint32(len(d)) {
		return nil, ErrTruncated
	}
	return d[start : start+mainLen], nil
}

// pgEpoch is PostgreSQL's timestamp epoch: TimestampTz counts
// microseconds from 2000-01-01 00:00 UTC.
var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

func pgTime(us int64) time.Time { return pgEpoch.Add(time.Duration(us) * time.Microsecond) }

// RestorePoint returns the name and time of an XLOG_RESTORE_POINT record
// (pg_create_restore_point); ok is false for any other record.
func (r *Record) RestorePoint() (name string, at time.Time, ok bool, err error) {
	if r.RMID != RMXLog || r.Info&^infoMask != xlogRestorePoint {
		return "", time.Time{}, false, nil
	}
	md, err := r.MainData()
	if err != nil {
		return "", time.Time{}, true, err
	}
	// xl_restore_point: TimestampTz rp_time; char rp_name[MAXFNAMELEN].
	if len(md) < 8+restorePointNameLen {
		return "", time.Time{}, true, fmt.Errorf("restore point at %s: %d bytes of data, want %d", r.LSN, len(md), 8+restorePointNameLen)
	}
	nameBytes := md[8 : 8+restorePointNameLen]
	n := 0
	for n < len(nameBytes) && nameBytes[n] != 0 {
		n++
	}
	if n == len(nameBytes) {
		return "", time.Time{}, true, fmt.Errorf("restore point at %s: name is not NUL-terminated", r.LSN)
	}
	return string(nameBytes[:n]), pgTime(int64(binary.LittleEndian.Uint64(md))), true, nil
}

// XactKind is what a transaction record ended.
type XactKind int

const (
	Commit XactKind = iota + 1
	Abort
	CommitPrepared
	AbortPrepared
)

func (k XactKind) String() string {
	return [...]string{"", "commit", "abort", "commit prepared", "abort prepared"}[k]
}

// XactTime returns the time of a commit or abort record (xl_xact_commit
// and xl_xact_abort start with TimestampTz xact_time), the times recovery
// compares with recovery_target_time; ok is false for any other record.
func (r *Record) XactTime() (kind XactKind, at time.Time, ok bool, err error) {
	if r.RMID != RMXact {
		return 0, time.Time{}, false, nil
	}
	switch r.Info & xactOpMask {
	case xactCommit:
		kind = Commit
	case xactAbort:
		kind = Abort
	case xactCommitPrepared:
		kind = CommitPrepared
	case xactAbortPrepared:
		kind = AbortPrepared
	default:
		return 0, time.Time{}, false, nil
	}
	md, err := r.MainData()
	if err != nil {
		return kind, time.Time{}, true, err
	}
	if len(md) < 8 {
		return kind, time.Time{}, true, fmt.Errorf("%s record at %s: %d bytes of data", kind, r.LSN, len(md))
	}
	return kind, pgTime(int64(binary.LittleEndian.Uint64(md))), true, nil
}
