package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/tusk-pg/tusk/internal/cli"

	"github.com/spf13/cobra"

	"github.com/tusk-pg/tusk/internal/storage"
)

func newStCheckCommand(a *app, fl *stFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "check", Short: "check access to the storage"}
	cmd.AddCommand(&cobra.Command{
		Use:   "read [OBJECT...]",
		Short: "check read access to the storage",
		Long:  `Lists the storage and checks that every OBJECT exists.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			store, err := fl.open(ctx, a)
			if err != nil {
				return err
			}
			if err := listOne(ctx, store); err != nil {
				return fmt.Errorf("failed to list the storage: %w", err)
			}
			var missing []string
			for _, name := range args {
				if ok, err := storage.Exists(ctx, store, name); err != nil || !ok {
					missing = append(missing, name)
				}
			}
			if len(missing) > 0 {
				return fmt.Errorf("files are missing: %s", strings.Join(missing, ", "))
			}
			a.Log.Info("Read check OK")
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "write",
		Short: "check write access to the storage",
		Long:  `Writes an object with a random 32-character name and deletes it.`,
		Args:  cli.ExactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			store, err := fl.open(ctx, a)
			if err != nil {
				return err
			}
			var name string
			for {
				b := make([]byte, 16)
				rand.Read(b)
				name = hex.EncodeToString(b)
				ok, err := storage.Exists(ctx, store, name)
				if err != nil {
					return fmt.Errorf("failed to read from the storage: %w", err)
				}
				if !ok {
					break
				}
			}
			err = store.Put(ctx, name, strings.NewReader("test"), 4)
			if derr := store.Delete(ctx, name); derr != nil {
				a.Log.Warn(fmt.Sprintf("failed to clean temp files, %s left in storage", name))
			}
			if err != nil {
				return fmt.Errorf("failed to write to the storage: %w", err)
			}
			a.Log.Info("Write check OK")
			return nil
		},
	})
	return cmd
}

// errListed stops a listing once it has shown that listing works.
var errListed = errors.New("listed")

// listOne lists the storage up to its first object.
func listOne(ctx context.Context, store storage.Storage) error {
	err := store.List(ctx, "", func(storage.ObjectInfo) error { return errListed })
	if errors.Is(err, errListed) {
		return nil
	}
	return err
}
