package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"github.com/tusk-pg/tusk/internal/cli"

	"github.com/spf13/cobra"

	"github.com/tusk-pg/tusk/internal/fsutil"
	"github.com/tusk-pg/tusk/internal/pipe"
)

func newStGetCommand(a *app, fl *stFlags) *cobra.Command {
	var noDecrypt, noDecompress bool
	cmd := &cobra.Command{
		Use:   "get OBJECT DESTINATION",
		Short: "Download the specified storage object",
		Long: `Downloads the object into the file DESTINATION (into DESTINATION/<object's
name> when it is a directory), decrypted with the configured key and
decompressed by its extension unless told not to. The file must not exist;
it appears only once complete (a temporary name, fsync, then a link that
never replaces anything).`,
		Args: cli.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			key, dst := args[0], args[1]
			if st, err := os.Stat(dst); err == nil && st.IsDir() {
				dst = filepath.Join(dst, path.Base(key))
			}
			if _, err := os.Lstat(dst); err == nil {
				return fmt.Errorf("open the destination file: %s: %w", dst, fs.ErrExist)
			}
			store, err := fl.open(ctx, a)
			if err != nil {
				return err
			}
			r, err := a.openObject(ctx, store, key, !noDecrypt, !noDecompress)
			if err != nil {
				return fmt.Errorf("download the file: %w", err)
			}
			err = writeNew(dst, r)
			if cerr := r.Close(); err == nil && cerr != nil {
				err = fmt.Errorf("download the file: %w", cerr)
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&noDecrypt, "no-decrypt", false, "Do not decrypt the object")
	cmd.Flags().BoolVar(&noDecompress, "no-decompress", false, "Do not decompress the object")
	return cmd
}

// writeNew writes r to the new file dst: into a temporary file beside it,
// fsynced, then linked to dst, which fails if dst appeared meanwhile.
// Nothing is left under either name on failure.
func writeNew(dst string, r io.Reader) error {
	tmp := filepath.Join(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp-"+fmt.Sprint(os.Getpid()))
	f, err := fsutil.Create(tmp, 0o640)
	if err != nil {
		return fmt.Errorf("open the destination file: %w", err)
	}
	defer os.Remove(tmp)
	_, err = io.CopyBuffer(struct{ io.Writer }{f}, struct{ io.Reader }{r}, make([]byte, pipe.CopyBufferSize))
	if err != nil {
		f.Close()
		return fmt.Errorf("download the file: %w", err)
	}
	if err := fsutil.SyncClose(f); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Link(tmp, dst); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("open the destination file: %s: %w", dst, fs.ErrExist)
		}
		return fmt.Errorf("write %s: %w", dst, err)
	}
	return fsutil.SyncDir(filepath.Dir(dst))
}
