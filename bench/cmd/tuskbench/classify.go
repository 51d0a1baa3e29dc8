package main

import "github.com/tusk-pg/tusk/bench/procfs"

// target says which processes belong to an archiver.
type target struct {
	archiver string
	// names are the command names (comm) of the archiver's programs.
	names map[string]bool
	// roots are started by the harness (a daemon): they and all their
	// descendants are the archiver's resident processes, whatever their name.
	roots []int
	// postmaster is the server's pid (0 when there is none). A named process
	// under it, in a server process's session, runs for archive_command; one
	// that left the session (setsid) or was re-parented to the harness is an
	// asynchronous worker and counts as resident.
	postmaster int
}

// classify picks the archiver's processes out of a snapshot: pid → true for
// a resident process (the daemon's tree, or a worker that left the server's
// sessions), false for one running for archive_command. The harness (self)
// itself is never the archiver's.
func classify(tree procfs.Tree, stats []procfs.Stat, self int, tgt target) map[int]bool {
	roles := map[int]bool{}
	for _, p := range stats {
		if p.PID == self {
			continue
		}
		resident := false
		for _, r := range tgt.roots {
			if tree.Descends(p.PID, r) {
				resident = true
				break
			}
		}
		if !resident {
			if !tgt.names[p.Comm] || !tree.Descends(p.PID, self) {
				continue
			}
			resident = !runsForServer(tree, p, tgt.postmaster)
		}
		roles[p.PID] = resident
	}
	return roles
}

// runsForServer reports whether p runs for archive_command: it descends from
// the postmaster and is in the session of a server process (PostgreSQL
// makes every child of the postmaster a session leader). A worker that
// detached with setsid has left that session.
func runsForServer(tree procfs.Tree, p procfs.Stat, postmaster int) bool {
	if postmaster == 0 || !tree.Descends(p.PID, postmaster) {
		return false
	}
	leader, ok := tree[p.Session]
	return ok && leader.Comm == "postgres" && tree.Descends(leader.PID, postmaster)
}
