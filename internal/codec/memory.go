package codec

// MemoryEstimate returns upper bounds, in bytes, of what one writer and one
// reader of m allocate while processing a stream of any length: the writer
// at tusk's settings, the reader for the largest stream it accepts (which
// covers every object WAL-G writes; streams declaring more are refused
// before anything is allocated). TestMemoryEstimate measures them (bytes
// allocated while streaming 16 MiB, library pools emptied first) and the
// fuzz targets check the reader bound on hostile input. Nothing here grows
// with the input length.
//
//	method  writer (tusk's settings)                 reader (largest accepted stream)
//	lz4     2 × 256 KiB block + frame state 1.0 MiB  2 × 4 MiB block (frame maximum, WAL-G)  8.0 MiB
//	zstd    1 MiB window + level's tables            8 MiB window (WAL-G's) + 2 blocks        8.6 MiB
//	          fastest 1.6, default 2.8,
//	          better 5.8, best 35.7 MiB
//	lzma    512 KiB dictionary × ~10    5.3 MiB      8 MiB dictionary (WAL-G's)              8.8 MiB
//	brotli  2^19 window + hash tables   3.8 MiB      2^22 window (WAL-G's)                   4.1 MiB
//	none    nothing                                  nothing
//	gzip    (read only)                              32 KiB window + tables                 0.1 MiB
//	lzo     (read only)                              2 × 256 KiB block (lzop's)              0.5 MiB
//
// lzma allocates per stream (its library cannot reset an encoder or
// decoder); lz4 returns its block buffers to the library's pool at Close
// and takes them back for the next stream; zstd and brotli writers keep
// theirs across Reset.
func MemoryEstimate(m Method) (writer, reader int64) {
	const MiB = 1 << 20
	switch m := m.(type) {
	case lz4Method:
		return MiB, 2*lz4MaxBlock + 256<<10
	case zstdMethod:
		w := int64(3 * MiB)
		switch m.level {
		case ZstdFastest:
			w = 2 * MiB
		case ZstdBetter:
			w = 6 * MiB
		case ZstdBest:
			w = 36 * MiB
		}
		return w, zstdMaxWindow + MiB
	case lzmaMethod:
		return 6 * MiB, lzmaMaxDict + MiB
	case brotliMethod:
		return 4 * MiB, 1<<brotliMaxLGWin + 512<<10
	case noneMethod:
		return 4 << 10, 4 << 10
	case gzipMethod:
		return 0, 96 << 10
	case lzoMethod:
		return 0, 2*lzoMaxBlock + 64<<10
	}
	return 0, 0
}
