//go:build race

package codec

// raceEnabled: the race detector makes sync.Pool drop a quarter of what is
// put back, on purpose, so the lz4 writer's pooled block buffers are
// allocated again and allocation counts say nothing about real use.
const raceEnabled = true
