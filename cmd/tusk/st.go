package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tusk-pg/tusk/internal/codec"
	"github.com/tusk-pg/tusk/internal/pipe"
	"github.com/tusk-pg/tusk/internal/storage"
	"github.com/tusk-pg/tusk/internal/storage/multi"
)

// stFlags are the flags every st subcommand takes (WAL-G's persistent
// ones).
type stFlags struct {
	target string
	glob   bool
}

func newStCommand(a *app) *cobra.Command {
	fl := &stFlags{}
	cmd := &cobra.Command{
		Use:   "st",
		Short: "(DANGEROUS) Storage tools",
		Long: `Storage tools work on the raw objects of the configured storage, with keys
relative to its prefix, as WAL-G's do. They can delete or overwrite anything
there: make sure you know what you are doing. Every one streams: memory does
not grow with the size of an object or of a listing.`,
	}
	pf := cmd.PersistentFlags()
	pf.StringVarP(&fl.target, "target", "t", "default", "storage to work on: \"default\" (the primary) or a WALG_FAILOVER_STORAGES name")
	pf.BoolVarP(&fl.glob, "glob", "g", false, "treat paths as glob patterns (not supported yet)")
	cmd.AddCommand(
		newStLsCommand(a, fl),
		newStStatCommand(a, fl),
		newStGetCommand(a, fl),
		newStCatCommand(a, fl),
		newStPutCommand(a, fl),
		newStRmCommand(a, fl),
		newStCheckCommand(a, fl),
		newStCopyCommand(a),
		newStTransferCommand(a, fl),
	)
	return cmd
}

// open checks the shared flags and opens the storage.
func (fl *stFlags) open(ctx context.Context, a *app) (storage.Storage, error) {
	if fl.glob {
		return nil, errors.New("--glob is not supported by tusk yet: give exact paths")
	}
	if fl.target == multi.All {
		return nil, fmt.Errorf("--target %q is not supported by tusk yet: name one storage", fl.target)
	}
	return a.NamedStorage(ctx, fl.target)
}

// listWriter prints WAL-G's listing table (type, size, last modified,
// name, and the version and extra columns S3 versioning fills). Columns
// are aligned per block of listBlock rows, so a listing of any length is
// printed as it is read.
type listWriter struct {
	w    io.Writer
	tw   *tabwriter.Writer
	rows int
}

const listBlock = 1000

func newListWriter(w io.Writer) (*listWriter, error) {
	l := &listWriter{w: w, tw: tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)}
	_, err := fmt.Fprintln(l.tw, "type\tsize\tlast modified\tname")
	return l, err
}

func (l *listWriter) row(typ string, size int64, mod time.Time, name string) error {
	if _, err := fmt.Fprintf(l.tw, "%s\t%d\t%s\t%s\t%s\t%s\n", typ, size, mod, name, "", ""); err != nil {
		return err
	}
	if l.rows++; l.rows%listBlock == 0 {
		return l.tw.Flush()
	}
	return nil
}

func (l *listWriter) object(o storage.ObjectInfo, name string) error {
	return l.row("obj", o.Size, o.ModTime, name)
}

func (l *listWriter) flush() error { return l.tw.Flush() }

// openObject opens key for reading, decrypted with the configured
// encryption and decompressed by its extension as asked (WAL-G's
// downloadObject). Close checks what decryption verifies at the end.
func (a *app) openObject(ctx context.Context, store storage.Storage, key string, decrypt, decompress bool) (io.ReadCloser, error) {
	var method codec.Method
	if decompress {
		ext := codec.ExtOf(key)
		m, err := codec.ByExt(ext)
		if err != nil || ext == "" {
			a.Log.Warn(fmt.Sprintf("decompressor for extension '.%s' was not found (supported methods: %v), will download uncompressed", ext, codec.Methods()))
		} else {
			method = m
		}
	}
	cr, err := a.Crypter()
	if err != nil {
		return nil, err
	}
	if !decrypt {
		cr = nil
	}
	body, err := store.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	dec, err := pipe.Decode(body, method, cr)
	if err != nil {
		body.Close()
		return nil, err
	}
	return &objectReader{ReadCloser: dec, body: body}, nil
}

// objectReader closes the decoder, then the object's body.
type objectReader struct {
	io.ReadCloser
	body io.Closer
}

func (r *objectReader) Close() error {
	err := r.ReadCloser.Close()
	if berr := r.body.Close(); err == nil {
		err = berr
	}
	return err
}
