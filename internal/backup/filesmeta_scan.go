package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/tusk-pg/tusk/internal/storage"
)

// ScanFilesMetadata decodes the Files object of a files_metadata.json
// document entry by entry, calling fn for each, without holding the
// document (or the rest of it, such as DatabasesByNames) in memory. Keys
// match case-insensitively, as in WAL-G's reader; other keys are skipped.
func ScanFilesMetadata(r io.Reader, fn func(name string, d FileDescription) error) error {
	dec := json.NewDecoder(r)
	if err := expectDelim(dec, '{'); err != nil {
		return err
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := tok.(string)
		if !strings.EqualFold(key, "Files") {
			if err := skipValue(dec); err != nil {
				return fmt.Errorf("%s: %w", key, err)
			}
			continue
		}
		tok, err = dec.Token()
		if err != nil {
			return err
		}
		if tok == nil {
			continue // null
		}
		if d, ok := tok.(json.Delim); !ok || d != '{' {
			return fmt.Errorf("files metadata: \"Files\" is %v, not an object", tok)
		}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return err
			}
			name, _ := tok.(string)
			var d FileDescription
			if err := dec.Decode(&d); err != nil {
				return fmt.Errorf("files metadata: \"Files\" entry %q: %w", name, err)
			}
			if err := fn(name, d); err != nil {
				return err
			}
		}
		if _, err := dec.Token(); err != nil {
			return err
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("data after the document")
	}
	return nil
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return fmt.Errorf("expected %q, found %v", want, tok)
	}
	return nil
}

// skipValue consumes one JSON value token by token.
func skipValue(dec *json.Decoder) error {
	depth := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
		if depth == 0 {
			return nil
		}
	}
}

// ForEachBackupFile calls fn for every entry of a backup's files metadata,
// streaming it from storage, with FetchFilesMetadata's rules for backups
// without one.
func ForEachBackupFile(ctx context.Context, store storage.Storage, name string, s *Sentinel, fn func(name string, d FileDescription) error) error {
	if s.FilesMetadataDisabled {
		return nil
	}
	key := FilesMetadataKey(name)
	body, err := store.Get(ctx, key)
	if errors.Is(err, storage.ErrNotFound) && s.Version < 2 {
		if s.Legacy != nil {
			for n, d := range s.Legacy.Files {
				if err := fn(n, d); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("get %s/%s: %w", store, key, err)
	}
	defer body.Close()
	lr := &io.LimitedReader{R: body, N: maxFilesMetadataSize + 1}
	if err := ScanFilesMetadata(lr, fn); err != nil {
		if lr.N <= 0 {
			return fmt.Errorf("%s/%s: larger than %d bytes", store, key, int64(maxFilesMetadataSize))
		}
		return fmt.Errorf("%s/%s: decode files metadata: %w", store, key, err)
	}
	return nil
}
