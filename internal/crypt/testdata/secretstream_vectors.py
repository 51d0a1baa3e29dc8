#!/usr/bin/env python3
"""Print known-answer vectors for crypto_secretstream_xchacha20poly1305,
made with the system libsodium through ctypes, as Go source for
secretstream_vectors_test.go.

Two streams with a fixed key: one with messages of lengths around the
16-byte padding boundary and every tag (MESSAGE, PUSH, REKEY, FINAL); one
whose counter is set to 0xffffffff before its first message, so libsodium
rekeys when the counter wraps."""
import ctypes, ctypes.util

lib = ctypes.CDLL(ctypes.util.find_library("sodium") or "libsodium.so.23")
assert lib.sodium_init() >= 0

class State(ctypes.Structure):
    _fields_ = [("k", ctypes.c_ubyte * 32), ("nonce", ctypes.c_ubyte * 12), ("pad", ctypes.c_ubyte * 8)]

key = bytes(range(32))

def stream(msgs, wrap=False):
    st = State()
    hdr = (ctypes.c_ubyte * 24)()
    k = (ctypes.c_ubyte * 32).from_buffer_copy(key)
    assert lib.crypto_secretstream_xchacha20poly1305_init_push(ctypes.byref(st), hdr, k) == 0
    if wrap:
        for i in range(4):
            st.nonce[i] = 0xff
    out = []
    for m, tag in msgs:
        c = (ctypes.c_ubyte * (len(m) + 17))()
        clen = ctypes.c_ulonglong()
        mb = (ctypes.c_ubyte * max(len(m), 1)).from_buffer_copy(m or b"\0")
        assert lib.crypto_secretstream_xchacha20poly1305_push(
            ctypes.byref(st), c, ctypes.byref(clen), mb, ctypes.c_ulonglong(len(m)), None, ctypes.c_ulonglong(0), ctypes.c_ubyte(tag)) == 0
        out.append((m, tag, bytes(c)))
    return bytes(hdr), out

def show(name, hdr, out, wrap):
    print("\t{name: %r, wrap: %s, header: %r, msgs: []ssMsg{" % (name, "true" if wrap else "false", hdr.hex()))
    for m, tag, c in out:
        print("\t\t{%r, %d, %r}," % (m.hex(), tag, c.hex()))
    print("\t}},")

msgs = [(b"", 0), (b"a", 0), (bytes(range(15)), 1), (bytes(range(16)), 0), (bytes(range(17)), 2),
        (b"after rekey" * 9, 0), (bytes(range(48)), 0), (b"final", 3)]
show("tags and padding", *stream(msgs), False)
show("counter wrap", *stream([(b"last message before the wrap", 0), (b"first after", 3)], True), True)
