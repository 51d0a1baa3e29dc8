package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/tusk-pg/tusk/internal/cli"

	"github.com/spf13/cobra"

	"github.com/tusk-pg/tusk/internal/config"
)

// settingRef is one setting as `tusk settings --json` prints it.
type settingRef struct {
	Name    string       `json:"name"`
	Aliases []string     `json:"aliases,omitempty"`
	State   config.State `json:"state"`
	Reason  string       `json:"reason,omitempty"`
	Default string       `json:"default,omitempty"`
	Kind    string       `json:"kind"`
	Values  []string     `json:"values,omitempty"`
	Secret  bool         `json:"secret,omitempty"`
	Flag    string       `json:"flag,omitempty"`
	Meaning string       `json:"meaning"`
}

// settingsReference is the catalogue as the command shows it, in the
// catalogue's order.
func settingsReference() []settingRef {
	flags := config.FlagNames()
	var refs []settingRef
	for _, s := range config.Settings() {
		state, why := s.State()
		r := settingRef{
			Name: s.Name, State: state, Reason: why, Default: s.Default, Kind: s.Kind.String(),
			Values: s.Values, Secret: s.Secret, Flag: flags[s.Name], Meaning: s.Meaning,
		}
		for _, k := range s.Lookup {
			if k != s.Name {
				r.Aliases = append(r.Aliases, k)
			}
		}
		if r.Flag != "" {
			r.Flag = "--" + r.Flag
		}
		refs = append(refs, r)
	}
	return refs
}

func newSettingsCommand() *cobra.Command {
	var asJSON, markdown bool
	cmd := &cobra.Command{
		Use:     "settings",
		Aliases: []string{"flags"},
		Short:   "List every setting tusk knows: state, default and meaning",
		Long: `Lists every setting tusk knows, WAL-G's and tusk's own (TUSK_*), from the
one catalogue the configuration is checked against: whether tusk honours it,
refuses to run with it (and why), or ignores it (and why), its default and
what it does. Settings come from the environment, a config file or a hidden
flag (--walg-compression-method for WALG_COMPRESSION_METHOD). The
configuration is not read: the list is the same on any machine.

"flags", WAL-G's name for its list of global flags, is an alias.`,
		Args: cli.ArgCount(0, 0),
		// The reference does not depend on (and is not stopped by) the
		// configuration.
		PersistentPreRunE: func(*cobra.Command, []string) error { return nil },
		RunE: func(cmd *cobra.Command, _ []string) error {
			refs := settingsReference()
			out := cmd.OutOrStdout()
			switch {
			case asJSON:
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(refs)
			case markdown:
				return settingsMarkdown(out, refs)
			}
			return settingsText(out, refs)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().BoolVar(&markdown, "markdown", false, "print a Markdown table (the README's)")
	cmd.MarkFlagsMutuallyExclusive("json", "markdown")
	return cmd
}

// settingsText prints one line per setting, aligned.
func settingsText(w io.Writer, refs []settingRef) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SETTING\tSTATE\tDEFAULT\tMEANING")
	for _, r := range refs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Name, r.State, orDash(r.Default), withReason(r))
	}
	return tw.Flush()
}

// settingsMarkdown prints the README's settings table.
func settingsMarkdown(w io.Writer, refs []settingRef) error {
	var b strings.Builder
	b.WriteString("| setting | state | default | meaning |\n|---|---|---|---|\n")
	for _, r := range refs {
		def := "–"
		if r.Default != "" {
			def = "`" + r.Default + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", r.Name, r.State, def, mdEscape(withReason(r)))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func withReason(r settingRef) string {
	if r.Reason == "" {
		return r.Meaning
	}
	return r.Meaning + " (" + string(r.State) + ": " + r.Reason + ")"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
