package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/tusk-pg/tusk/internal/cli"

	"github.com/spf13/cobra"

	"github.com/tusk-pg/tusk/internal/storage"
)

// rmBatch is how many keys st rm holds before deleting them.
const rmBatch = 1000

func newStRmCommand(a *app, fl *stFlags) *cobra.Command {
	var allVersions bool
	var versionID string
	cmd := &cobra.Command{
		Use:   "rm PATH",
		Short: "Removes objects by the prefix from the specified storage",
		Long: `Removes the object PATH or, when there is no such object (or PATH ends with
/), every object in the folder PATH, as WAL-G does. An empty PATH or / is
the whole storage.`,
		Args: cli.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if allVersions || versionID != "" {
				return errNoVersions
			}
			ctx := cmd.Context()
			store, err := fl.open(ctx, a)
			if err != nil {
				return err
			}
			arg := args[0]
			key := strings.Trim(arg, "/")
			if key != "" && !strings.HasSuffix(arg, "/") {
				exists, err := storage.Exists(ctx, store, key)
				if err != nil {
					return fmt.Errorf("list files by prefix: %w", err)
				}
				if exists {
					return store.Delete(ctx, key)
				}
			}
			prefix := ""
			if key != "" {
				prefix = key + "/"
			}
			n, err := deletePrefix(cmd, store, prefix)
			if err != nil {
				return err
			}
			if n == 0 {
				return fmt.Errorf("object or folder %q does not exist", arg)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&allVersions, "all-versions", false, "Remove all file versions (not supported yet)")
	cmd.Flags().StringVar(&versionID, "version-id", "", "Remove one object version (not supported yet)")
	return cmd
}

// deletePrefix deletes every object under prefix, rmBatch keys at a time
// as the listing goes.
func deletePrefix(cmd *cobra.Command, store storage.Storage, prefix string) (int, error) {
	ctx := cmd.Context()
	var batch []string
	n := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := store.Delete(ctx, batch...); err != nil {
			return fmt.Errorf("delete objects by the prefix: %w", err)
		}
		n += len(batch)
		batch = batch[:0]
		return nil
	}
	err := store.List(ctx, prefix, func(o storage.ObjectInfo) error {
		if batch = append(batch, o.Key); len(batch) == rmBatch {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	return n, err
}

// errNoVersions refuses S3 object-version handling.
var errNoVersions = errors.New("object versions (--all-versions, --version-id) are not supported by tusk yet")
