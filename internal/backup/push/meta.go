package push

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/pg"
)

// fileRecorder spools one tar builder's part of files_metadata.json to an
// unlinked temporary file, so the metadata of a cluster with millions of
// files costs disk, not memory. A builder fills one tar at a time, so each
// tar's members are contiguous in its builder's spool:
//
//	T <tar object name>
//	F <member name as JSON string> <FileDescription as JSON>
//	S <member name> <FileDescription> (skipped by a delta: in no tar)
//
// (tab-separated, one record per line; JSON strings cannot hold a raw
// newline or tab).
type fileRecorder struct {
	f   *os.File
	w   *bufio.Writer
	err error
}

const recorderBufferSize = 32 << 10

func newFileRecorder(dir string) (*fileRecorder, error) {
	f, err := os.CreateTemp(dir, "tusk-files-metadata-*")
	if err != nil {
		return nil, fmt.Errorf("create files metadata spool: %w", err)
	}
	// Unlinked at once: nothing is left behind whatever happens next.
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, fmt.Errorf("files metadata spool: %w", err)
	}
	return &fileRecorder{f: f, w: bufio.NewWriterSize(f, recorderBufferSize)}, nil
}

func (r *fileRecorder) line(kind byte, parts ...[]byte) {
	if r.err != nil {
		return
	}
	r.w.WriteByte(kind)
	for _, p := range parts {
		r.w.WriteByte('\t')
		r.w.Write(p)
	}
	_, r.err = r.w.Write([]byte{'\n'})
}

func (r *fileRecorder) startTar(tarName string) { r.line('T', []byte(tarName)) }

func (r *fileRecorder) add(member string, d backup.FileDescription) { r.record('F', member, d) }

// addSkipped records a file a delta does not store: in Files, in no tar.
func (r *fileRecorder) addSkipped(member string, d backup.FileDescription) { r.record('S', member, d) }

func (r *fileRecorder) record(kind byte, member string, d backup.FileDescription) {
	if r.err != nil {
		return
	}
	name, err := json.Marshal(member)
	if err != nil {
		r.err = err
		return
	}
	desc, err := json.Marshal(d)
	if err != nil {
		r.err = err
		return
	}
	r.line(kind, name, desc)
}

// rewind flushes the spool and returns a reader of it from the start.
func (r *fileRecorder) rewind() (*bufio.Reader, error) {
	if r.err != nil {
		return nil, fmt.Errorf("files metadata spool: %w", r.err)
	}
	if err := r.w.Flush(); err != nil {
		return nil, fmt.Errorf("files metadata spool: %w", err)
	}
	if _, err := r.f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("files metadata spool: %w", err)
	}
	return bufio.NewReaderSize(r.f, recorderBufferSize), nil
}

func (r *fileRecorder) close() { r.f.Close() }

// readRecord returns the next record's kind and fields; the slices are only
// valid until the next call. long accumulates records longer than the
// reader's buffer.
func readRecord(br *bufio.Reader, long *[]byte) (kind byte, a, b []byte, err error) {
	line, err := br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		*long = append((*long)[:0], line...)
		for errors.Is(err, bufio.ErrBufferFull) {
			line, err = br.ReadSlice('\n')
			*long = append(*long, line...)
		}
		line = *long
	}
	if err != nil {
		if err == io.EOF && len(line) == 0 {
			return 0, nil, nil, io.EOF
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, nil, fmt.Errorf("files metadata spool: %w", err)
	}
	line = line[:len(line)-1]
	if len(line) < 2 || line[1] != '\t' {
		return 0, nil, nil, fmt.Errorf("files metadata spool: bad record %q", line)
	}
	kind, rest := line[0], line[2:]
	if kind == 'F' || kind == 'S' {
		i := bytes.IndexByte(rest, '\t')
		if i < 0 {
			return 0, nil, nil, fmt.Errorf("files metadata spool: bad record %q", line)
		}
		return kind, rest[:i], rest[i+1:], nil
	}
	return kind, rest, nil, nil
}

// extraTarSet is a TarFileSets entry not recorded by a builder (the
// backup_label tar).
type extraTarSet struct {
	tar     string
	members []string
}

// writeFilesMetadata streams files_metadata.json from the spools: Files,
// TarFileSets (with extra), then DatabasesByNames when dbs is not nil.
func writeFilesMetadata(ctx context.Context, w io.Writer, recs []*fileRecorder, extra []extraTarSet, dbs databaseSource) error {
	bw := bufio.NewWriterSize(w, recorderBufferSize)
	var long []byte
	put := func(s ...[]byte) {
		for _, p := range s {
			bw.Write(p)
		}
	}
	// Files.
	put([]byte(`{"Files":{`))
	first := true
	for _, r := range recs {
		br, err := r.rewind()
		if err != nil {
			return err
		}
		for {
			kind, name, desc, err := readRecord(br, &long)
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
			if kind != 'F' && kind != 'S' {
				continue
			}
			if !first {
				put([]byte{','})
			}
			first = false
			put(name, []byte{':'}, desc)
		}
	}
	// TarFileSets.
	put([]byte(`},"TarFileSets":{`))
	firstTar := true
	for _, r := range recs {
		br, err := r.rewind()
		if err != nil {
			return err
		}
		open, firstMember := false, true
		for {
			kind, a, _, err := readRecord(br, &long)
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
			switch kind {
			case 'T':
				if open {
					put([]byte{']'})
				}
				if !firstTar {
					put([]byte{','})
				}
				firstTar = false
				tarName, _ := json.Marshal(string(a))
				put(tarName, []byte(":["))
				open, firstMember = true, true
			case 'F':
				if !firstMember {
					put([]byte{','})
				}
				firstMember = false
				put(a)
			}
		}
		if open {
			put([]byte{']'})
		}
	}
	for _, e := range extra {
		if !firstTar {
			put([]byte{','})
		}
		firstTar = false
		b, err := json.Marshal(e.tar)
		if err != nil {
			return err
		}
		m, err := json.Marshal(e.members)
		if err != nil {
			return err
		}
		put(b, []byte{':'}, m)
	}
	put([]byte{'}'})
	// DatabasesByNames, one database at a time.
	if dbs != nil {
		firstDB := true
		err := dbs(ctx, func(name string, info backup.DatabaseObjectsInfo) error {
			if firstDB {
				put([]byte(`,"DatabasesByNames":{`))
			} else {
				put([]byte{','})
			}
			firstDB = false
			k, err := json.Marshal(name)
			if err != nil {
				return err
			}
			v, err := json.Marshal(info)
			if err != nil {
				return err
			}
			put(k, []byte{':'}, v)
			return nil
		})
		if err != nil {
			return err
		}
		if !firstDB {
			put([]byte{'}'})
		}
	}
	put([]byte{'}'})
	return bw.Flush()
}

// databaseSource calls emit for every database's partial-restore metadata.
type databaseSource func(ctx context.Context, emit func(name string, info backup.DatabaseObjectsInfo) error) error

// collectDatabases is WAL-G's collectDatabaseNamesMetadata: every database
// that accepts connections, visited on its own connection; one that cannot
// be reached is left out with a warning, as WAL-G does. Only one
// database's relations are in memory at a time.
func collectDatabases(conn *pg.Conn, opts pg.ConnectOptions) databaseSource {
	return func(ctx context.Context, emit func(string, backup.DatabaseObjectsInfo) error) error {
		dbs, err := conn.Databases(ctx)
		if err != nil {
			return err
		}
		for _, db := range dbs {
			o := opts
			o.Database, o.NoFallback = db.Name, true
			dc, err := pg.Connect(ctx, o)
			if err != nil {
				if opts.Log != nil {
					opts.Log.Warn("cannot connect to a database for partial-restore metadata; leaving it out", "database", db.Name, "error", err)
				}
				continue
			}
			tables, err := databaseTables(ctx, dc)
			dc.Close(context.WithoutCancel(ctx))
			if err != nil {
				return fmt.Errorf("database %s: %w", db.Name, err)
			}
			if err := emit(db.Name, backup.DatabaseObjectsInfo{Oid: db.OID, Tables: tables}); err != nil {
				return err
			}
		}
		return nil
	}
}

// databaseTables builds WAL-G's tables_new map (query_runner.go getTables):
// every relation without an inheritance parent keyed "schema.name", with
// all its descendants flattened into its subtables. As in WAL-G a parent is
// looked up under its child's schema.
func databaseTables(ctx context.Context, conn *pg.Conn) (map[string]backup.TableInfo, error) {
	type node struct {
		oid, relfilenode uint32
		children         []string
	}
	tables := map[string]*node{}
	var roots []string
	err := conn.Relations(ctx, func(r pg.Relation) error {
		child := r.Namespace + "." + r.Name
		n := tables[child]
		if n == nil {
			n = &node{}
			tables[child] = n
		}
		n.oid, n.relfilenode = r.OID, r.RelFileNode
		if r.Parent == "" {
			roots = append(roots, child)
			return nil
		}
		parent := r.Namespace + "." + r.Parent
		p := tables[parent]
		if p == nil {
			p = &node{oid: r.OID, relfilenode: r.RelFileNode}
			tables[parent] = p
		}
		p.children = append(p.children, child)
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make(map[string]backup.TableInfo, len(roots))
	for _, root := range roots {
		rn := tables[root]
		ti := backup.TableInfo{Oid: rn.oid, Relfilenode: rn.relfilenode}
		stack := append([]string(nil), rn.children...)
		seen := map[string]bool{root: true}
		for len(stack) > 0 {
			cur := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if seen[cur] {
				continue // inheritance cannot loop, but a name clash could
			}
			seen[cur] = true
			cn := tables[cur]
			if ti.SubTables == nil {
				ti.SubTables = map[string]backup.TableInfo{}
			}
			ti.SubTables[cur] = backup.TableInfo{Oid: cn.oid, Relfilenode: cn.relfilenode}
			stack = append(stack, cn.children...)
		}
		out[root] = ti
	}
	return out, nil
}
