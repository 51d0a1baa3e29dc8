package main

import (
	"bufio"
	"fmt"
	"strconv"
	"strings"
)

// planBounds are the two bounds a memory plan states, in bytes.
type planBounds struct {
	Committed uint64
	RSS       uint64
}

// parsePlanText reads the "bound: committed memory" and "bound: resident
// memory" rows of tusk's text memory plan (backup-push has no --json).
func parsePlanText(text string) (planBounds, error) {
	var b planBounds
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		var dst *uint64
		var rest string
		switch {
		case strings.HasPrefix(line, "bound: committed memory"):
			dst, rest = &b.Committed, strings.TrimPrefix(line, "bound: committed memory")
		case strings.HasPrefix(line, "bound: resident memory (RSS)"):
			dst, rest = &b.RSS, strings.TrimPrefix(line, "bound: resident memory (RSS)")
		default:
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 2 {
			return b, fmt.Errorf("memory plan row %q: want a number and a unit", line)
		}
		v, err := parseSize(f[0], f[1])
		if err != nil {
			return b, fmt.Errorf("memory plan row %q: %w", line, err)
		}
		*dst = v
	}
	if b.Committed == 0 || b.RSS == 0 {
		return b, fmt.Errorf("memory plan has no committed or RSS bound:\n%s", text)
	}
	return b, nil
}

func parseSize(num, unit string) (uint64, error) {
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("size %q: not a number", num)
	}
	mult := map[string]float64{"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("size unit %q: want B, KiB, MiB or GiB", unit)
	}
	return uint64(v * mult), nil
}
