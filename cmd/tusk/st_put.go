package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/tusk-pg/tusk/internal/cli"

	"github.com/spf13/cobra"

	"github.com/tusk-pg/tusk/internal/codec"
	"github.com/tusk-pg/tusk/internal/crypt"
	"github.com/tusk-pg/tusk/internal/pipe"
	"github.com/tusk-pg/tusk/internal/storage"
)

func newStPutCommand(a *app, fl *stFlags) *cobra.Command {
	var noEncrypt, noCompress, force, stdin bool
	cmd := &cobra.Command{
		Use:   "put LOCAL_FILE OBJECT",
		Short: "Upload the specified file to the storage",
		Long: `Uploads LOCAL_FILE (standard input with -s, then the only argument is
OBJECT) compressed with WALG_COMPRESSION_METHOD, whose extension is appended
to OBJECT, and encrypted with the configured key, unless told not to. An
existing object is kept unless -f is given. The upload streams.`,
		Args: cli.ArgCount(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			var src io.Reader
			var key string
			switch {
			case stdin && len(args) == 1:
				src, key = cmd.InOrStdin(), args[0]
			case stdin:
				return errors.New("with -s (--read-stdin) give only OBJECT")
			case len(args) == 1:
				return errors.New("should specify localPath on read-from stdin flag")
			default:
				f, err := openLocalFile(args[0])
				if err != nil {
					return err
				}
				defer f.Close()
				src, key = f, args[1]
			}
			method := a.Cfg.Compression()
			if noCompress {
				method, _ = codec.ByName(codec.None)
			} else {
				key = codec.Key(key, method)
			}
			var cr crypt.Crypter
			if !noEncrypt {
				var err error
				if cr, err = a.Crypter(); err != nil {
					return err
				}
			}
			store, err := fl.open(ctx, a)
			if err != nil {
				return err
			}
			put := store.Put
			if !force {
				exists, err := storage.Exists(ctx, store, key)
				if err != nil {
					return fmt.Errorf("check file overwrite: check object existence: %w", err)
				}
				if exists {
					return fmt.Errorf("check file overwrite: object %s already exists. To overwrite it, add the -f flag", key)
				}
				if c, ok := store.(storage.Creator); ok {
					put = c.Create // no race with another writer either
				}
			}
			pr, pw := io.Pipe()
			go func() {
				_, err := pipe.NewEncoder(method, cr).Encode(pw, src)
				pw.CloseWithError(err)
			}()
			err = put(ctx, key, pr, -1)
			pr.CloseWithError(err) // stops the encoder if the upload failed
			if errors.Is(err, storage.ErrExists) {
				return fmt.Errorf("check file overwrite: object %s already exists. To overwrite it, add the -f flag", key)
			}
			if err != nil {
				return fmt.Errorf("upload: %w", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&noEncrypt, "no-encrypt", false, "Do not encrypt the object")
	f.BoolVar(&noCompress, "no-compress", false, "Do not compress the object")
	f.BoolVarP(&force, "force", "f", false, "Overwrite the existing object")
	f.BoolVarP(&stdin, "read-stdin", "s", false, "Read file content from STDIN")
	return cmd
}

// openLocalFile opens a regular file to upload (WAL-G's OpenLocalFile).
func openLocalFile(p string) (*os.File, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("open the local file: %w", err)
	}
	st, err := f.Stat()
	if err == nil && st.IsDir() {
		err = fmt.Errorf("provided local path (%s) points to a directory, exiting", p)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
