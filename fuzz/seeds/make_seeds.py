#!/usr/bin/env python3
"""Writes the hand-made seed inputs into corpus/<target>/seed-*: a few
well-formed programs per target (so the fuzzer starts past the obvious
checks) plus small pseudo-random ones. Run from fuzz/; idempotent."""
import os, random, struct

def put(target, name, data):
    d = os.path.join("corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)

targets = [l.split('"')[1] for l in open("../crates/fuzz/src/lib.rs")
           if l.startswith('    ("')]
rng = random.Random(15)
for t in targets:
    for i, n in enumerate([16, 64, 256]):
        put(t, "noise%d" % i, bytes(rng.randrange(256) for _ in range(n)))

# QMP: negotiation, queries, a bad command, HMP, quit.
put("qmp", "session", b'\x00{"execute":"qmp_capabilities"}\r\n{"execute":"query-status","id":1}\n'
    b'{"execute":"query-cpus-fast"}{"execute":"query-block"}{"execute":"stop"}'
    b'{"execute":"cont"}{"execute":"nope","id":"x"}[1,2]"str"\n'
    b'{"execute":"human-monitor-command","arguments":{"command-line":"info status"}}'
    b'{"execute":"screendump","arguments":{"filename":"/dev/null"}}{"execute":"quit"}')
put("qmp", "toolong", b'\x01{"execute":"' + b"a" * 100 + b'"}')

# VNC: RFB 3.8, security None, ClientInit, then messages.
def rfb_msgs():
    m = b""
    m += bytes([0, 0, 0, 0]) + bytes([16, 16, 0, 1]) + struct.pack(">HHH", 31, 63, 31) + bytes([11, 5, 0, 0, 0, 0])
    m += bytes([2, 0]) + struct.pack(">H", 3) + struct.pack(">iii", 16, 0, -223)
    m += bytes([3, 0]) + struct.pack(">HHHH", 0, 0, 40, 30)
    m += bytes([4, 1, 0, 0]) + struct.pack(">I", 0x61)
    m += bytes([5, 1]) + struct.pack(">HH", 10, 10)
    m += bytes([6, 0, 0, 0]) + struct.pack(">I", 3) + b"abc"
    m += bytes([3, 1]) + struct.pack(">HHHH", 5, 5, 100, 100)
    return m
plain = b"RFB 003.008\n" + bytes([1]) + bytes([1]) + rfb_msgs()
put("vnc", "rfb38", b"\x00" + plain)
put("vnc", "rfb33", b"\x00RFB 003.003\n" + bytes([1]) + rfb_msgs())
ws_req = (b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
          b"Sec-WebSocket-Protocol: binary\r\n\r\n")
def ws_frame(payload, opcode=2):
    mask = b"\x01\x02\x03\x04"
    n = len(payload)
    hdr = bytes([0x80 | opcode]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n))
    return hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
put("vnc", "websocket", b"\x01" + ws_req + ws_frame(plain[:20]) + ws_frame(b"ping", 9) + ws_frame(plain[20:]) + ws_frame(b"", 8))
put("vnc", "auth", b"\x02RFB 003.008\n" + bytes([2]) + bytes(16) + bytes([0]))

# ELF: a 64-bit vmlinux-like header with one PT_LOAD at 1 MiB.
def elf64(entry=0x100000, paddr=0x100000, filesz=0x100, memsz=0x200):
    eh = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    eh += struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, entry, 64, 0, 0, 64, 56, 1, 0, 0, 0)
    ph = struct.pack("<IIQQQQQQ", 1, 7, 0x1000, paddr, paddr, filesz, memsz, 0x1000)
    img = eh + ph
    img += bytes(0x1000 - len(img)) + b"\x90" * filesz
    return img
def elf32(entry=0x100000, paddr=0x100000, filesz=0x100, memsz=0x200):
    eh = b"\x7fELF" + bytes([1, 1, 1, 0]) + bytes(8)
    eh += struct.pack("<HHIIIIIHHHHHH", 2, 3, 1, entry, 52, 0, 0, 52, 32, 1, 0, 0, 0)
    ph = struct.pack("<IIIIIIII", 1, 0x1000, paddr, paddr, filesz, memsz, 7, 0x1000)
    img = eh + ph
    img += bytes(0x1000 - len(img)) + b"\x90" * filesz
    return img
put("loader_elf", "elf64", elf64())
put("loader_elf", "elf32", elf32())
# Multiboot: offset word, flags, module flag, then an ELF image.
put("loader_multiboot", "elf", struct.pack("<HIB", 64, 0x3, 0) + elf32())
put("loader_multiboot", "aout", struct.pack("<HIB", 0, 0x10003, 1) + bytes(12)
    + struct.pack("<IIIII", 0x100000, 0x100000, 0x100400, 0x100800, 0x100020) + bytes(0x400))
# bzImage: cmdline, initrd, then a header that loads.
def bz_header():
    k = bytearray(2 * 512 + 4096)
    k[0x1f1] = 1
    k[0x1f4:0x1f8] = struct.pack("<I", 256)
    k[0x1fe:0x200] = b"\x55\xaa"
    k[0x200] = 0xeb; k[0x201] = 0x6a
    k[0x202:0x206] = b"HdrS"
    k[0x206:0x208] = struct.pack("<H", 0x020f)
    k[0x211] = 1
    k[0x22c:0x230] = struct.pack("<I", 0x37ffffff)
    k[0x234] = 1
    k[0x236:0x238] = struct.pack("<H", 1)
    k[0x238:0x23c] = struct.pack("<I", 0x7ff)
    k[0x258:0x260] = struct.pack("<Q", 0x100000)
    k[0x260:0x264] = struct.pack("<I", 0x100000)
    return bytes(k)
put("loader_bzimage", "valid", bytes([13]) + b"console=ttyS0" + bytes([8]) + b"initrd!!" + bz_header())
put("loader_initrd", "valid", bytes([1, 1]) + struct.pack("<H", 0x100) + bytes([5]) + b"quiet" + bytes(range(256)) * 4)

# x86: real code in each mode's reach.
code = bytes.fromhex("b041e6e9" "66b80100" "0f01d0" "fa" "f4" "cd10" "e4 60".replace(" ", "") + "0f a2".replace(" ", "") + "eb fe".replace(" ", ""))
put("x86_decode", "mixed", code)
put("emu_exec", "real", bytes([0]) + bytes(34) + code)
put("emu_exec", "long", bytes([2]) + bytes(34) + bytes.fromhex("48c7c0410000004889c3e6e9f4"))

# virtio-blk: a read request (desc 0 header, desc 1 data, desc 2 status), notify.
def desc(i, addr, ln, flags, nxt):
    # op 1: index u16, addr kind (2 = u16), addr u16, len kind (1 = u16), len u16, flags u16, next u16
    return bytes([1]) + struct.pack("<HBHBHHH", i, 2, addr, 1, ln, flags, nxt)
def mem(at, data):
    return bytes([0]) + struct.pack("<HB", at, len(data)) + data
req = mem(0x1000, struct.pack("<IIQ", 0, 0, 1)) + desc(0, 0x1000, 16, 1, 1) + desc(1, 0x2000, 512, 3, 2) + desc(2, 0x3000, 1, 2, 0)
put("virtio_blk", "read", req + bytes([3]) + struct.pack("<H", 0) + bytes([4, 0]))
wreq = mem(0x1000, struct.pack("<IIQ", 1, 0, 2)) + desc(0, 0x1000, 16, 1, 1) + desc(1, 0x2000, 512, 1, 2) + desc(2, 0x3000, 1, 2, 0)
put("virtio_blk", "write", wreq + bytes([3]) + struct.pack("<H", 0) + bytes([4, 0]))
put("virtio_rng", "fill", desc(0, 0x2000, 64, 2, 0) + bytes([3, 0, 0, 4, 0]))
put("virtio_net", "tx", desc(0, 0x2000, 60, 0, 0) + bytes([3, 0, 0, 4, 1]))
put("virtio_net", "rx", bytes([7]) + struct.pack("<H", 60) + bytes(60) + desc(0, 0x2000, 1526, 2, 0) + bytes([3, 0, 0, 4, 0]))
put("virtio_input", "event", bytes([7, 0]) + struct.pack("<IIHHBI", 10, 10, 640, 480, 1, 0) + desc(0, 0x2000, 8, 2, 0) + bytes([3, 0, 0, 4, 0]))
put("virtio_chain", "three", bytes([3]) + struct.pack("<BHBHHH", 2, 0x1000, 1, 16, 1, 1) + struct.pack("<BHBHHH", 2, 0x2000, 1, 512, 3, 2) + struct.pack("<BHBHHH", 2, 0x3000, 1, 1, 2, 0) + bytes([0, 0, 0]))

# net_user: frames (op, u16 length, bytes); op bit 0 fixes the IP checksum,
# bit 2 polls the stack.
def frame(op, b):
    return bytes([op]) + struct.pack("<H", len(b)) + b
guest_mac = bytes([0x52, 0x54, 0, 0x12, 0x34, 0x56])
bcast = b"\xff" * 6
arp = bcast + guest_mac + b"\x08\x06" + struct.pack(">HHBBH", 1, 0x0800, 6, 4, 1) + guest_mac + bytes([10, 0, 2, 15]) + bytes(6) + bytes([10, 0, 2, 2])
def ipv4(proto, src, dst, payload):
    return struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 64, proto, 0, bytes(src), bytes(dst)) + payload
bootp = bytes([1, 1, 6, 0]) + b"\x12\x34\x56\x78" + bytes(20) + guest_mac + bytes(10) + bytes(192) + b"\x63\x82\x53\x63" + bytes([53, 1, 1, 255])
udp = struct.pack(">HHHH", 68, 67, 8 + len(bootp), 0) + bootp
dhcp_frame = bcast + guest_mac + b"\x08\x00" + ipv4(17, [0, 0, 0, 0], [255, 255, 255, 255], udp)
icmp = struct.pack(">BBHHH", 8, 0, 0xf7fd, 1, 1)
ping = b"\x52\x55\x0a\x00\x02\x02" + guest_mac + b"\x08\x00" + ipv4(1, [10, 0, 2, 15], [10, 0, 2, 2], icmp)
put("net_user", "arp_dhcp_ping", frame(4, arp) + frame(5, dhcp_frame) + frame(5, ping))
put("net_user", "dhcp_parser", frame(2, bootp))
