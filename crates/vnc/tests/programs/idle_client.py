#!/usr/bin/env python3
"""A minimal RFB viewer for measure.sh: connects, asks for Raw updates and,
like every real viewer, asks again (incrementally) after each update, for
SECONDS seconds. Prints how many updates it got.

Usage: idle_client.py HOST PORT SECONDS
"""
import socket
import struct
import sys
import time


def read(s, n):
    b = b""
    while len(b) < n:
        chunk = s.recv(n - len(b))
        if not chunk:
            raise EOFError("server closed")
        b += chunk
    return b


def main():
    host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    s = socket.create_connection((host, port))
    read(s, 12)
    s.sendall(b"RFB 003.008\n")
    n = read(s, 1)[0]
    types = read(s, n)
    assert 1 in types, "the server wants a password"
    s.sendall(b"\x01")
    assert struct.unpack(">I", read(s, 4))[0] == 0
    s.sendall(b"\x01")
    w, h = struct.unpack(">HH", read(s, 4))
    read(s, 16)
    read(s, struct.unpack(">I", read(s, 4))[0])
    s.sendall(struct.pack(">BBHi", 2, 0, 1, 0))
    s.sendall(struct.pack(">BBHHHH", 3, 0, 0, 0, w, h))
    updates = 0
    end = time.monotonic() + seconds
    s.settimeout(0.2)
    while time.monotonic() < end:
        try:
            head = read(s, 4)
        except socket.timeout:
            continue
        s.settimeout(None)
        for _ in range(struct.unpack(">H", head[2:])[0]):
            x, y, rw, rh, enc = struct.unpack(">HHHHi", read(s, 12))
            if enc == 0:
                read(s, rw * rh * 4)
        updates += 1
        s.settimeout(0.2)
        s.sendall(struct.pack(">BBHHHH", 3, 1, 0, 0, w, h))
    print(updates)


if __name__ == "__main__":
    main()
