package walindex

import "sort"

// Range is an inclusive run of segment numbers [Lo, Hi].
type Range struct{ Lo, Hi uint64 }

// Len is the number of segments in the range.
func (r Range) Len() uint64 { return r.Hi - r.Lo + 1 }

// RangeSet is a set of segment numbers kept as sorted, disjoint,
// non-adjacent ranges: its size follows the number of gaps, not the number
// of segments. Adding in ascending order (an object store's listing order)
// costs O(1) per segment; any other order costs a binary search and, when
// a new range is opened in the middle, a copy of the ranges after it.
// The zero value is an empty set.
type RangeSet struct {
	r     []Range
	count uint64
}

// Add puts n in the set.
func (s *RangeSet) Add(n uint64) {
	if k := len(s.r); k > 0 && s.r[k-1].Hi < n {
		// Fast path: at or past the end, as in a sorted listing.
		if s.r[k-1].Hi+1 == n {
			s.r[k-1].Hi = n
		} else {
			s.r = append(s.r, Range{n, n})
		}
		s.count++
		return
	}
	// i is the first range starting after n.
	i := sort.Search(len(s.r), func(i int) bool { return s.r[i].Lo > n })
	if i > 0 && s.r[i-1].Hi >= n {
		return // already present
	}
	joinPrev := i > 0 && s.r[i-1].Hi+1 == n
	joinNext := i < len(s.r) && s.r[i].Lo == n+1
	switch {
	case joinPrev && joinNext:
		s.r[i-1].Hi = s.r[i].Hi
		s.r = append(s.r[:i], s.r[i+1:]...)
	case joinPrev:
		s.r[i-1].Hi = n
	case joinNext:
		s.r[i].Lo = n
	default:
		s.r = append(s.r, Range{})
		copy(s.r[i+1:], s.r[i:])
		s.r[i] = Range{n, n}
	}
	s.count++
}

// Contains reports whether n is in the set.
func (s *RangeSet) Contains(n uint64) bool {
	i := sort.Search(len(s.r), func(i int) bool { return s.r[i].Hi >= n })
	return i < len(s.r) && s.r[i].Lo <= n
}

// Count is the number of segments in the set.
func (s *RangeSet) Count() uint64 { return s.count }

// Empty reports whether the set holds nothing.
func (s *RangeSet) Empty() bool { return len(s.r) == 0 }

// Min and Max are the lowest and highest members; both are 0 for an empty
// set.
func (s *RangeSet) Min() uint64 {
	if len(s.r) == 0 {
		return 0
	}
	return s.r[0].Lo
}

func (s *RangeSet) Max() uint64 {
	if len(s.r) == 0 {
		return 0
	}
	return s.r[len(s.r)-1].Hi
}

// Ranges returns the set's ranges in ascending order. The slice is the
// set's own: callers must not modify it.
func (s *RangeSet) Ranges() []Range { return s.r }

// Gaps returns the missing ranges between Min and Max, ascending.
func (s *RangeSet) Gaps() []Range {
	if len(s.r) < 2 {
		return nil
	}
	gaps := make([]Range, 0, len(s.r)-1)
	for i := 1; i < len(s.r); i++ {
		gaps = append(gaps, Range{s.r[i-1].Hi + 1, s.r[i].Lo - 1})
	}
	return gaps
}

// Runs calls fn for the maximal runs of present and missing segments in
// [lo, hi], from hi down to lo (the direction WAL-G walks back from the
// current segment). It stops early when fn returns false.
func (s *RangeSet) Runs(lo, hi uint64, fn func(r Range, present bool) bool) {
	if lo > hi {
		return
	}
	// i is the last range starting at or below hi.
	i := sort.Search(len(s.r), func(i int) bool { return s.r[i].Lo > hi }) - 1
	cur := hi
	for {
		var r Range
		present := false
		switch {
		case i >= 0 && s.r[i].Hi >= cur:
			// cur is inside range i.
			r, present = Range{max(s.r[i].Lo, lo), cur}, true
			i--
		case i >= 0:
			// cur is in the gap above range i.
			r = Range{max(s.r[i].Hi+1, lo), cur}
		default:
			r = Range{lo, cur}
		}
		if !fn(r, present) || r.Lo == lo {
			return
		}
		cur = r.Lo - 1
	}
}
