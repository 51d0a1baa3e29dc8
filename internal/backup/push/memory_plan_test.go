package push

import (
	"strings"
	"testing"

	"github.com/tusk-pg/tusk/internal/codec"
	"github.com/tusk-pg/tusk/internal/crypt"
	"github.com/tusk-pg/tusk/internal/memplan"
)

func TestMemoryPlan(t *testing.T) {
	lz4, _ := codec.ByName("lz4")
	cr, err := crypt.NewLibsodium(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Method: lz4, Crypter: cr, DiskConcurrency: 4, UploadConcurrency: 2, Verify: true, TempDir: "/var/tmp"}
	w, _ := codec.MemoryEstimate(lz4)
	ew, _ := crypt.MemoryEstimate(cr)
	facts := memplan.Facts{
		Codec:   memplan.Codec{Name: "lz4", Writer: w},
		Crypter: memplan.Crypter{Name: cr.Name(), Writer: ew},
		Storage: memplan.Storage{Name: "S3", Upload: 256 << 10, UnknownSize: 40 << 20, UnknownSizeTotal: 60 << 20, Note: "S3"},
	}
	plan := MemoryPlan(o, facts)
	// Two builders (min of 4 and 2): two read buffers, two lz4 writers,
	// two S3 requests, the 60 MiB S3 pool (less than 2 × 40).
	min := int64(2*readBufferSize + 2*w + 2*256<<10 + 60<<20)
	if live := plan.Live(); live < min || live > min+2<<20 {
		t.Errorf("live %d, want about %d", live, min)
	}
	var out strings.Builder
	if err := plan.Table(&out); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"file read buffer", "compressor (lz4)", "encryption (libsodium)", "upload buffers (shared pool)", "GOMEMLIMIT", "committed"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("plan lacks %q:\n%s", s, out.String())
		}
	}
	// The spools and the verifier only when used; no pool cap: per upload.
	o.WithoutFilesMetadata, o.Verify = true, false
	out.Reset()
	facts.Storage = memplan.Storage{Name: "file", Upload: 128 << 10}
	MemoryPlan(o, facts).Table(&out)
	if strings.Contains(out.String(), "spool") || strings.Contains(out.String(), "verify") || strings.Contains(out.String(), "shared pool") {
		t.Errorf("plan:\n%s", out.String())
	}
}
