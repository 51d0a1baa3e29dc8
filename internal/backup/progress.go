package backup

// Progress receives byte counts as a backup moves data: bytes read from
// disk by backup-push, bytes written to disk by backup-fetch. Add is called
// from several goroutines, once per buffer-sized read or write, so it must
// be cheap and safe for concurrent use. The display lives elsewhere: this
// package only counts.
type Progress interface{ Add(n int64) }
