package main

import (
	"io"

	"github.com/tusk-pg/tusk/internal/cli"

	"github.com/spf13/cobra"

	"github.com/tusk-pg/tusk/internal/codec"
	"github.com/tusk-pg/tusk/internal/crypt"
	"github.com/tusk-pg/tusk/internal/memplan"
	"github.com/tusk-pg/tusk/internal/pipe"
	"github.com/tusk-pg/tusk/internal/storecopy"
)

func newStCopyCommand(a *app) *cobra.Command {
	var from, to, prefix string
	var decrypt, encrypt, showPlan, planJSON bool
	cmd := &cobra.Command{
		Use:   "copy --from FROM_CONFIG --to TO_CONFIG",
		Short: "Copy objects from one storage to another",
		Long: `Copies every object whose key starts with --prefix (every object by
default) from the storage FROM_CONFIG names to the one TO_CONFIG names,
under the same keys, as WAL-G's st copy does: objects the target holds are
overwritten. The bytes are copied as stored, unless --decrypt-source
decrypts them with FROM_CONFIG's key and --encrypt-source encrypts them
with TO_CONFIG's (WAL-G's flag names). 4 objects are copied at once,
streamed: --memory-plan prints the bound.`,
		Args: cli.ExactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			src, dst, err := a.copyEnds(from, to, planJSON, showPlan)
			if err != nil {
				return err
			}
			var dec, enc crypt.Crypter
			if decrypt {
				if dec, err = src.crypter(ctx); err != nil {
					return err
				}
				if dec == nil {
					a.Log.Warn("--decrypt-source: " + from + " sets no encryption; objects are copied as stored")
				}
			}
			if encrypt {
				if enc, err = dst.crypter(ctx); err != nil {
					return err
				}
				if enc == nil {
					a.Log.Warn("--encrypt-source: " + to + " sets no encryption; objects are copied unencrypted")
				}
			}
			if done, err := showCopyPlan(cmd, copyMemoryPlan(src, dst, reencryptFacts(dec, enc)), showPlan, planJSON); done {
				return err
			}
			return a.runCopy(ctx, src, dst, true, reencrypt(dec, enc), func(c *storecopy.Copier) error {
				return c.Prefix(ctx, prefix)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "Storage config from where should copy objects")
	f.StringVar(&to, "to", "", "Storage config to where should copy objects")
	f.StringVarP(&prefix, "prefix", "p", "", "Prefix-filter path in `from` storage.")
	f.BoolVarP(&decrypt, "decrypt-source", "d", false, "Decrypt file from source storage")
	f.BoolVarP(&encrypt, "encrypt-source", "e", false, "Encrypt file in target storage")
	copyPlanFlags(cmd, &showPlan, &planJSON)
	return cmd
}

// reencrypt decrypts with dec and encrypts with enc, each when set; nil
// when neither is: the bytes are then copied as stored.
func reencrypt(dec, enc crypt.Crypter) storecopy.Transform {
	if dec == nil && enc == nil {
		return nil
	}
	none, _ := codec.ByExt("")
	return func(dst io.Writer, src io.Reader) error {
		r, err := pipe.Decode(src, nil, dec)
		if err != nil {
			return err
		}
		_, err = pipe.NewEncoder(none, enc).Encode(dst, r)
		// Close checks what decryption verifies at the end.
		if cerr := r.Close(); err == nil {
			err = cerr
		}
		return err
	}
}

func reencryptFacts(dec, enc crypt.Crypter) memplan.Copy {
	var c memplan.Copy
	if dec != nil {
		_, r := crypt.MemoryEstimate(dec)
		c.Decrypt = memplan.Crypter{Name: dec.Name(), Reader: r}
	}
	if enc != nil {
		w, _ := crypt.MemoryEstimate(enc)
		c.Encrypt = memplan.Crypter{Name: enc.Name(), Writer: w}
	}
	if dec != nil || enc != nil {
		c.Transform = pipe.CopyBufferSize
	}
	return c
}
