package catchup

import (
	"bytes"
	"encoding/gob"
	"testing"
	"time"
)

// FuzzReceive feeds untrusted bytes to both readers of the protocol: the
// sender's ReadHello and the receiver's command loop with its content
// reads. Neither may panic, loop without input or accept a name CheckName
// refuses.
func FuzzReceive(f *testing.F) {
	var hello bytes.Buffer
	enc := gob.NewEncoder(&hello)
	_ = enc.Encode(Control{SystemIdentifier: 1, CurrentTimeline: 1, Checkpoint: 99})
	_ = enc.Encode(FileList{"base/1/1259": {MTime: time.Unix(1, 2)}, "global": {}})
	f.Add(hello.Bytes())

	var cmds bytes.Buffer
	enc = gob.NewEncoder(&cmds)
	_ = enc.Encode(Command{IsFull: true, FileName: "base/1/1259", FileSize: 9000})
	_ = enc.Encode(make([]byte, ChunkSize))
	_ = enc.Encode(make([]byte, 9000-ChunkSize))
	_ = enc.Encode(Command{IsIncremental: true, FileName: "base/1/2", FileSize: 3})
	_ = enc.Encode([]byte("wi1"))
	_ = enc.Encode(Command{IsDelete: true, FilesToDelete: []string{"base/7"}})
	_ = enc.Encode(Command{IsBinContents: true, FileName: "backup_label", BinaryContents: []byte("x")})
	_ = enc.Encode(Command{IsDone: true})
	f.Add(cmds.Bytes())
	f.Add([]byte{0xf8, 1, 2, 3, 4, 5, 6, 7, 8})

	f.Fuzz(func(t *testing.T, data []byte) {
		if ctl, list, err := decoderConn(bytes.NewReader(data)).ReadHello(); err == nil {
			_ = ctl
			for name := range list {
				if name != "" && CheckName(name) != nil {
					t.Fatalf("file list name %q accepted", name)
				}
			}
		}
		c := decoderConn(bytes.NewReader(data))
		var cmd Command
		for range 1000 {
			if err := c.ReadCommand(&cmd); err != nil || cmd.IsDone {
				return
			}
			if (cmd.IsFull || cmd.IsIncremental || cmd.IsBinContents) && CheckName(cmd.FileName) != nil {
				t.Fatalf("name %q accepted", cmd.FileName)
			}
			if cmd.IsFull || cmd.IsIncremental {
				r := c.Content(cmd.FileSize)
				var b [100]byte
				if _, err := r.Read(b[:]); err != nil {
					return
				}
				if err := r.Drain(); err != nil {
					return
				}
			}
		}
	})
}
