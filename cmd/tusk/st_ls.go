package main

import (
	"slices"
	"strings"
	"time"

	"github.com/tusk-pg/tusk/internal/cli"

	"github.com/spf13/cobra"

	"github.com/tusk-pg/tusk/internal/storage"
)

func newStLsCommand(a *app, fl *stFlags) *cobra.Command {
	var recursive, allVersions bool
	cmd := &cobra.Command{
		Use:   "ls [FOLDER]",
		Short: "Prints objects in the provided storage folder",
		Long: `Prints the objects and sub-folders of FOLDER (the storage root by default)
as WAL-G does: type (obj or dir), size, last modified, name relative to
FOLDER. With -r, every object below FOLDER and no folders.`,
		Args: cli.ArgCount(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if allVersions {
				return errNoVersions
			}
			ctx := cmd.Context()
			store, err := fl.open(ctx, a)
			if err != nil {
				return err
			}
			prefix := ""
			if len(args) == 1 {
				prefix = strings.Trim(args[0], "/")
			}
			if prefix != "" {
				prefix += "/"
			}
			out, err := newListWriter(cmd.OutOrStdout())
			if err != nil {
				return err
			}
			if recursive {
				err = store.List(ctx, prefix, func(o storage.ObjectInfo) error {
					return out.object(o, strings.TrimPrefix(o.Key, prefix))
				})
			} else {
				err = listLevel(cmd, store, prefix, out)
			}
			if ferr := out.flush(); err == nil {
				err = ferr
			}
			return err
		},
	}
	cmd.Flags().BoolVarP(&recursive, "recursive", "r", false, "List folder recursively")
	cmd.Flags().BoolVar(&allVersions, "all-versions", false, "Show all object versions (not supported yet)")
	return cmd
}

// listLevel prints one level: the sub-folders first, as WAL-G does, then
// the objects. The storage lists recursively, so the level is read twice:
// once for the folder names (held, sorted), once for the objects
// (streamed).
func listLevel(cmd *cobra.Command, store storage.Storage, prefix string, out *listWriter) error {
	ctx := cmd.Context()
	dirs := map[string]bool{}
	err := store.List(ctx, prefix, func(o storage.ObjectInfo) error {
		if dir, _, ok := strings.Cut(strings.TrimPrefix(o.Key, prefix), "/"); ok {
			dirs[dir] = true
		}
		return nil
	})
	if err != nil {
		return err
	}
	names := make([]string, 0, len(dirs))
	for d := range dirs {
		names = append(names, d)
	}
	slices.Sort(names)
	for _, d := range names {
		if err := out.row("dir", 0, time.Time{}, d+"/"); err != nil {
			return err
		}
	}
	return store.List(ctx, prefix, func(o storage.ObjectInfo) error {
		name := strings.TrimPrefix(o.Key, prefix)
		if strings.Contains(name, "/") {
			return nil
		}
		return out.object(o, name)
	})
}
