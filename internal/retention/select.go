package retention

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/wal"
)

// Modifier is the optional first word of retain, before and target.
type Modifier int

const (
	NoModifier Modifier = iota
	// Full counts only full backups (retain FULL).
	Full
	// FindFull extends the selection to the full backup a delta needs.
	FindFull
)

// ErrRefused matches (errors.Is) every refusal WAL-G makes; nothing is
// deleted then.
var ErrRefused = errors.New("refused")

type refusal struct{ msg string }

func (e *refusal) Error() string        { return e.msg }
func (e *refusal) Is(target error) bool { return target == ErrRefused }

func refuse(format string, args ...any) error { return &refusal{fmt.Sprintf(format, args...)} }

// ErrNothingToDelete is returned when no backup falls outside what is kept;
// WAL-G then logs "No backup found for deletion" and succeeds.
var ErrNothingToDelete = errors.New("no backup found for deletion")

// Scope limits which objects a plan may delete.
type Scope int

const (
	ScopeAll     Scope = iota
	ScopeBackups       // basebackups_005/ only
	ScopeWAL           // wal_005/ only
)

func (s Scope) includes(key string) bool {
	switch s {
	case ScopeBackups:
		return strings.HasPrefix(key, backup.Prefix)
	case ScopeWAL:
		return strings.HasPrefix(key, wal.Folder)
	}
	return true
}

// Plan is what one delete removes: every object in Scope for which Match
// holds. Sentinels are the stop sentinels among them, which go first.
type Plan struct {
	Scope     Scope
	Match     func(key string) bool
	Sentinels []string
	// NoWAL: the plan never deletes outside basebackups_005/, so the WAL
	// listing is skipped.
	NoWAL bool
	// Folders, when set, are the only backup folders the plan deletes from,
	// listed and emptied one after another in this order (a delta chain's
	// bases first) instead of listing all of basebackups_005/.
	Folders []string
}

// ParseTime parses a time argument as WAL-G does (RFC 3339); ok is false
// for anything else, which is then taken as a backup name.
func ParseTime(s string) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339, s)
	return t, err == nil
}

// Retain keeps the n newest backups (n full ones with Full; with FindFull,
// back to the full backup the n-th needs) and everything newer than after
// (a time or a backup name) when after is not empty.
func (r *Repo) Retain(mod Modifier, n int, after string) (*Plan, error) {
	if n <= 0 {
		return nil, fmt.Errorf("cannot retain less than one backup. Check out delete everything")
	}
	target := r.retainTarget(mod, n)
	if after != "" {
		byAfter := r.afterTarget(mod, after)
		switch {
		case target == nil:
			target = byAfter
		case byAfter != nil && !r.order.less(target.sentinelKey(), byAfter.sentinelKey()):
			// keep the older of the two, so both rules are honoured
			target = byAfter
		}
	}
	if target == nil {
		return nil, ErrNothingToDelete
	}
	return r.beforeTarget(target, ScopeAll)
}

func (r *Repo) retainTarget(mod Modifier, n int) *Backup {
	seen := map[string]bool{}
	for _, b := range r.newestFirst() {
		switch mod {
		case NoModifier:
			seen[b.Name] = true
			if len(seen) == n {
				return b
			}
		case Full:
			if b.IsFull() {
				seen[b.Name] = true
			}
			if len(seen) == n {
				return b
			}
		case FindFull:
			seen[b.Name] = true
			if len(seen) >= n && b.IsFull() {
				return b
			}
		}
	}
	return nil
}

// afterTarget is the oldest backup made at or after a time, or the named
// backup (matched as a name prefix) or any after it; with a modifier it
// must be a full backup.
func (r *Repo) afterTarget(mod Modifier, after string) *Backup {
	t, isTime := ParseTime(after)
	met := false
	for _, b := range r.oldestFirst() {
		var ok bool
		if isTime {
			ok = !r.backupTime(b).Before(t)
		} else {
			met = met || strings.HasPrefix(b.sentinelFile(), after)
			ok = met
		}
		if ok && (mod == NoModifier || b.IsFull()) {
			return b
		}
	}
	return nil
}

// Before deletes everything older than the named backup (a name prefix)
// or than the oldest backup made at or after a time. The target must be
// a full backup; FindFull moves a delta target to the full backup it needs.
func (r *Repo) Before(mod Modifier, arg string) (*Plan, error) {
	if mod == Full {
		return nil, refuse("unsupported modifier FULL for delete before")
	}
	name := arg
	if t, ok := ParseTime(arg); ok {
		var found *Backup
		for _, b := range r.oldestFirst() {
			if !r.backupTime(b).Before(t) {
				found = b
				break
			}
		}
		if found == nil {
			return nil, ErrNothingToDelete
		}
		name = found.sentinelFile()
	}
	met := false
	for _, b := range r.newestFirst() {
		if mod == NoModifier {
			if strings.HasPrefix(b.sentinelFile(), name) {
				return r.beforeTarget(b, ScopeAll)
			}
			continue
		}
		met = met || strings.HasPrefix(b.sentinelFile(), name)
		if met && b.IsFull() {
			return r.beforeTarget(b, ScopeAll)
		}
	}
	return nil, fmt.Errorf("backup %q: %w", arg, backup.ErrBackupNotFound)
}

// beforeTarget deletes every object in scope that comes before target in
// WAL order and is not permanent. A delta target is refused: the backups
// before it include its base.
func (r *Repo) beforeTarget(target *Backup, scope Scope) (*Plan, error) {
	if !target.IsFull() {
		return nil, refuse("%s is incremental and it's predecessors cannot be deleted. Consider FIND_FULL option.",
			target.sentinelFile())
	}
	tk := target.sentinelKey()
	match := func(key string) bool { return r.order.less(key, tk) && !r.isPermanent(key) }
	return r.plan(scope, match, nil), nil
}

// plan builds a plan, listing the matching sentinels newest first; order
// (when given) fixes their order instead.
func (r *Repo) plan(scope Scope, match func(string) bool, order []*Backup) *Plan {
	p := &Plan{Scope: scope, Match: match, NoWAL: scope == ScopeBackups}
	if order == nil {
		order = r.newestFirst()
	}
	for _, b := range order {
		if k := b.sentinelKey(); scope.includes(k) && match(k) {
			p.Sentinels = append(p.Sentinels, k)
		}
	}
	return p
}

// Everything deletes every object under the storage prefix. Permanent
// backups make it refuse unless force is set.
func (r *Repo) Everything(force bool) (*Plan, error) {
	var perm []string
	for _, b := range r.backups {
		if r.permanent[b.Name] {
			perm = append(perm, b.Name)
		}
	}
	if len(perm) > 0 {
		if !force {
			return nil, refuse("Found permanent backups=%v", perm)
		}
		r.opts.Log.Info(fmt.Sprintf("Found permanent backups=%v", perm))
	}
	return r.plan(ScopeAll, func(string) bool { return true }, nil), nil
}

// TargetSpec names the backup of delete target: Name (a backup name or
// LATEST) or UserData (metadata.json user_data), not both.
type TargetSpec struct {
	Name     string
	UserData json.RawMessage
	FindFull bool
}

// Target deletes one backup and every delta that depends on it; with
// FindFull, the whole chain of its full backup. Permanence does not protect
// a backup named here (WAL-G deletes it too); each one is reported.
func (r *Repo) Target(ctx context.Context, spec TargetSpec) (*Plan, error) {
	target, err := r.findTarget(spec)
	if errors.Is(err, backup.ErrBackupNotFound) && spec.Name != "" {
		return r.interruptedTarget(ctx, spec, err)
	}
	if err != nil {
		return nil, err
	}
	var set []*Backup
	if spec.FindFull {
		set = r.related(target)
	} else {
		set = r.dependants(target)
	}
	return r.targetPlan(ctx, set, nil)
}

// targetPlan deletes the backups of set, their sentinels first (deltas
// before their bases, so that a delete stopped midway still finds its
// target when run again), and the leftover folders chained below them or
// below the extra names: those of a delete target stopped midway.
func (r *Repo) targetPlan(ctx context.Context, set []*Backup, extra []string) (*Plan, error) {
	names := map[string]bool{}
	for _, b := range set {
		names[b.Name] = true
		if b.Permanent() {
			r.opts.Log.Warn(fmt.Sprintf("backup %s is permanent: deleting it because it was named explicitly", b.Name))
		}
	}
	leftovers, err := r.leftoverFolders(ctx)
	if err != nil {
		return nil, err
	}
	// Folders go bases first, so that what a stopped delete leaves is
	// always the lower part of a chain, reachable by name from the
	// backup named.
	var folders []string
	for _, b := range set {
		folders = append(folders, b.Name)
	}
	for _, name := range chainedLeftovers(leftovers, append(extra, folders...)) {
		if !names[name] {
			names[name] = true
			folders = append(folders, name)
		}
	}
	rev := make([]*Backup, len(set))
	for i, b := range set {
		rev[len(set)-1-i] = b
	}
	match := func(key string) bool {
		name, ok := backupOfKey(key)
		return ok && names[name]
	}
	p := r.plan(ScopeBackups, match, rev)
	p.Folders = folders
	return p, nil
}

func (r *Repo) findTarget(spec TargetSpec) (*Backup, error) {
	switch {
	case spec.Name != "" && spec.UserData != nil:
		return nil, fmt.Errorf("incorrect arguments. Specify target backup name OR target userdata, not both")
	case spec.Name == backup.LatestName:
		if len(r.listed) == 0 {
			return nil, fmt.Errorf("Requested backup was not found: %w", backup.ErrNoBackups)
		}
		return r.listed[len(r.listed)-1], nil
	case spec.Name != "":
		if err := backup.CheckName(spec.Name); err != nil {
			return nil, err
		}
		b := r.byName[spec.Name]
		if b == nil {
			return nil, fmt.Errorf("Backup '%s' does not exist: %w", spec.Name, backup.ErrBackupNotFound)
		}
		return b, nil
	case spec.UserData != nil:
		var found []*Backup
		for _, b := range r.backups {
			if b.Meta == nil {
				continue
			}
			eq, err := backup.UserDataEqual(b.Meta.UserData, spec.UserData)
			if err != nil {
				return nil, fmt.Errorf("backup %s: %w", b.Name, err)
			}
			if eq {
				found = append(found, b)
			}
		}
		switch len(found) {
		case 0:
			return nil, fmt.Errorf("Requested backup was not found: no backup has that user data: %w", backup.ErrBackupNotFound)
		case 1:
			return found[0], nil
		}
		names := make([]string, len(found))
		for i, b := range found {
			names[i] = b.Name
		}
		return nil, fmt.Errorf("too many backups (%d) found with specified user data: %s", len(found), strings.Join(names, " "))
	}
	return nil, fmt.Errorf("insufficient arguments")
}

// dependants is target and every delta built on it, directly or not,
// breadth first from target.
func (r *Repo) dependants(target *Backup) []*Backup {
	children := map[string][]*Backup{}
	for _, b := range r.backups {
		if !b.IsFull() {
			children[b.DeltaFrom] = append(children[b.DeltaFrom], b)
		}
	}
	out := []*Backup{}
	seen := map[string]bool{}
	for queue := []*Backup{target}; len(queue) > 0; queue = queue[1:] {
		b := queue[0]
		if seen[b.Name] {
			continue // a cycle in hostile sentinels
		}
		seen[b.Name] = true
		out = append(out, b)
		queue = append(queue, children[b.Name]...)
	}
	return out
}

// related is the chain of target's full backup: the full backup and every
// delta whose chain starts at it, the full backup first.
func (r *Repo) related(target *Backup) []*Backup {
	full := target.Name
	if !target.IsFull() {
		full = target.DeltaFullName
	}
	var out []*Backup
	for _, b := range r.backups {
		if b.Name == full {
			out = append([]*Backup{b}, out...)
		} else if b.DeltaFullName == full && !b.IsFull() {
			out = append(out, b)
		}
	}
	return out
}

// Garbage deletes WAL and leftover backup objects older than the oldest
// non-permanent backup (by start time). With no such backup it does
// nothing, unless withoutBackupCheck: then everything not permanent goes.
func (r *Repo) Garbage(scope Scope, withoutBackupCheck bool) (*Plan, error) {
	var oldest *Backup
	for _, b := range r.backups {
		if b.Meta == nil {
			r.opts.Log.Warn(fmt.Sprintf("Failed to get metadata of backup %s", b.Name))
			continue
		}
		if b.Meta.IsPermanent {
			r.opts.Log.Info(fmt.Sprintf("Backup %s is permanent, it is not eligible to be selected as the oldest backup", b.Name))
			continue
		}
		if oldest == nil || b.Meta.StartTime.Before(oldest.Meta.StartTime) {
			oldest = b
		}
	}
	if oldest == nil {
		r.opts.Log.Info("Couldn't find any non-permanent backups in storage.")
		if !withoutBackupCheck {
			r.opts.Log.Info("Not doing anything.")
			return nil, ErrNothingToDelete
		}
		r.opts.Log.Info("Will delete garbage anyway.")
		return r.plan(scope, func(key string) bool { return scope.includes(key) && !r.isPermanent(key) }, nil), nil
	}
	for _, b := range r.newestFirst() {
		if strings.HasPrefix(b.sentinelFile(), oldest.Name) {
			return r.beforeTarget(b, scope)
		}
	}
	return nil, fmt.Errorf("backup %s: %w", oldest.Name, backup.ErrBackupNotFound)
}
