package main

import (
	"reflect"
	"testing"

	"github.com/tusk-pg/tusk/bench/procfs"
)

func TestClassify(t *testing.T) {
	const self = 10
	stats := []procfs.Stat{
		{PID: 1, Comm: "init", Session: 1},
		{PID: self, PPID: 1, Comm: "tuskbench", Session: 5},
		{PID: 20, PPID: self, Comm: "postgres", Session: 5}, // postmaster
		{PID: 21, PPID: 20, Comm: "postgres", Session: 21},  // archiver process
		{PID: 30, PPID: 21, Comm: "sh", Session: 21},        // archive_command shell
		{PID: 31, PPID: 30, Comm: "time", Session: 21},      // GNU time wrapper
		{PID: 40, PPID: 31, Comm: "tusk", Session: 21},      // wal-push
		{PID: 41, PPID: 40, Comm: "tusk", Session: 41},      // detached under the command
		{PID: 50, PPID: self, Comm: "tusk", Session: 50},    // re-parented worker
		{PID: 51, PPID: 50, Comm: "tusk", Session: 50},      // its child
		{PID: 60, PPID: self, Comm: "sh", Session: 5},       // daemon started by the harness
		{PID: 61, PPID: 60, Comm: "helper", Session: 5},     // daemon child, any name
		{PID: 70, PPID: 1, Comm: "tusk", Session: 70},       // someone else's tusk
		{PID: 80, PPID: self, Comm: "pgbench", Session: 5},  // workload, not named
		{PID: 90, PPID: 20, Comm: "postgres", Session: 90},  // a backend
		{PID: 91, PPID: 90, Comm: "tusk", Session: 90},      // tusk run by a backend
	}
	tree := procfs.NewTree(stats)
	got := classify(tree, stats, self, target{names: map[string]bool{"tusk": true}, roots: []int{60}, postmaster: 20})
	want := map[int]bool{40: false, 41: true, 50: true, 51: true, 60: true, 61: true, 91: false}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("classify = %v\nwant       %v", got, want)
	}

	// Without a server (idle daemon) only the daemon's tree counts; named
	// processes of the harness are resident.
	got = classify(tree, stats, self, target{names: map[string]bool{}, roots: []int{60}})
	if want := map[int]bool{60: true, 61: true}; !reflect.DeepEqual(got, want) {
		t.Fatalf("idle classify = %v, want %v", got, want)
	}
}
