package main

import (
	"reflect"
	"testing"
)

func TestParseGeneric(t *testing.T) {
	g, err := parseGeneric(`name=walg,daemon='/opt/wal-g daemon {sock}',archive_command='walg-daemon-client {sock} wal-push %f',process=wal-g|walg-daemon-cli,env='WALG_LOG_LEVEL=DEVEL GOGC=50'`)
	if err != nil {
		t.Fatal(err)
	}
	want := genericSpec{
		Name:           "walg",
		Daemon:         "/opt/wal-g daemon {sock}",
		ArchiveCommand: "walg-daemon-client {sock} wal-push %f",
		Process:        []string{"wal-g", "walg-daemon-cli"},
		Env:            []string{"WALG_LOG_LEVEL=DEVEL", "GOGC=50"},
	}
	if !reflect.DeepEqual(g, want) {
		t.Fatalf("got %+v\nwant %+v", g, want)
	}
}

func TestParseGenericDefaults(t *testing.T) {
	g, err := parseGeneric(`name=x,archive_command='/usr/local/bin/some-long-archiver-name push ''%p'', now'`)
	if err != nil {
		t.Fatal(err)
	}
	if g.ArchiveCommand != "/usr/local/bin/some-long-archiver-name push '%p', now" {
		t.Fatalf("archive_command %q", g.ArchiveCommand)
	}
	// Named after archive_command's program, cut to the kernel's 15 bytes.
	if !reflect.DeepEqual(g.Process, []string{"some-long-archi"}) {
		t.Fatalf("process %v", g.Process)
	}
	g, err = parseGeneric(`name=y,daemon=/bin/d,archive_command=c`)
	if err != nil || !reflect.DeepEqual(g.Process, []string{"d"}) {
		t.Fatalf("process %v, %v", g.Process, err)
	}
}

func TestParseGenericErrors(t *testing.T) {
	for _, s := range []string{
		``,
		`name=a`,
		`archive_command=x`,
		`name=a b,archive_command=x`,
		`name=a,archive_command='x`,
		`name=a,archive_command='x'y`,
		`name=a,archive_command=x,bogus=1`,
		`name=a,name=b,archive_command=x`,
		`name=a,archive_command=x,env=NOEQUALS`,
		`name=a,=x`,
		`name=a,archive_command`,
	} {
		if _, err := parseGeneric(s); err == nil {
			t.Errorf("%q: no error", s)
		}
	}
}

func TestExpandAndQuote(t *testing.T) {
	got := expand("{tusk} daemon-client {sock} wal-push %f # {other}", map[string]string{"tusk": "/b/tusk", "sock": "/r/s.sock"})
	if got != "/b/tusk daemon-client /r/s.sock wal-push %f # {other}" {
		t.Fatalf("expand: %q", got)
	}
	if q := confQuote(`a 'b' c`); q != `'a ''b'' c'` {
		t.Fatalf("confQuote: %s", q)
	}
}
