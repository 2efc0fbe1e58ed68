"""Drive a Linux guest's VGA console through Kite's VNC server with vncdotool
(a client no one here wrote): type a shell command, check the screen the
client sees against the guest's own record of its console (/dev/vcsa1), then
have the guest load bochs-drm and check the client follows the mode switch.

usage: linux_console.py VNC_PORT SERIAL_LOG

The guest's serial console (SERIAL_LOG) carries its side: the typed command's
output and two dumps of /dev/vcsa1 (text mode, then bochs-drm's fbcon)
between "vcsa-begin-NAME" / "vcsa-end-NAME" lines. Exit status 0 and a last
line "linux-console-ok" when everything matched.
"""

import re
import sys
import time

from vncdotool import api

TIMEOUT = 240


def fail(msg):
    print(f"linux_console: {msg}", flush=True)
    api.shutdown()
    sys.exit(1)


def serial(path):
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def wait_serial(path, needle):
    start = time.time()
    while time.time() - start < TIMEOUT:
        text = serial(path)
        if needle in text:
            return text
        time.sleep(0.2)
    fail(f"no {needle!r} on the serial console after {TIMEOUT} s:\n{serial(path)[-3000:]}")


def type_line(client, line):
    for ch in line:
        client.keyPress("space" if ch == " " else ch)
    client.keyPress("enter")


def vcsa(text, name):
    """(lines, cols, cursor_x, cursor_y, [(char, attr)...]) of a dump."""
    m = re.search(rf"vcsa-begin-{name}\s*\n(.*?)vcsa-end-{name}", text, re.S)
    if not m:
        fail(f"no vcsa dump {name}")
    data = bytes(int(h, 16) for h in m.group(1).split())
    lines, cols, x, y = data[0], data[1], data[2], data[3]
    cells = [(data[i], data[i + 1]) for i in range(4, 4 + 2 * lines * cols, 2)]
    if len(cells) != lines * cols:
        fail(f"vcsa dump {name} is short: {len(cells)} cells for {lines}x{cols}")
    return lines, cols, x, y, cells


def compare(image, dump, name):
    """Every cell the guest says is blank is one colour on the client's
    screen; every printable non-blank cell has at least two."""
    lines, cols, cx, cy, cells = dump
    w, h = image.size
    if w % cols or h % lines:
        fail(f"{name}: a {w}x{h} screen is not a grid of {cols}x{lines} cells")
    cw, ch = w // cols, h // lines
    px = image.load()
    blank = printed = 0
    for row in range(lines):
        for col in range(cols):
            if (col, row) == (cx, cy):
                continue  # the blinking cursor
            char = cells[row * cols + col][0]
            colours = {
                px[col * cw + dx, row * ch + dy] for dy in range(ch) for dx in range(cw)
            }
            if char in (0x00, 0x20):
                blank += 1
                if len(colours) != 1:
                    fail(f"{name}: cell {row},{col} is blank in the guest, not on screen")
            elif 0x21 <= char <= 0x7E:
                printed += 1
                if len(colours) < 2:
                    fail(f"{name}: cell {row},{col} holds {chr(char)!r} in the guest, blank on screen")
    if printed < 200:
        fail(f"{name}: only {printed} printed cells: the console is nearly empty")
    print(f"{name}: {w}x{h}, {cols}x{lines} cells of {cw}x{ch}: {printed} printed and {blank} blank cells match", flush=True)


def main():
    port, log = int(sys.argv[1]), sys.argv[2]
    wait_serial(log, "kite-guest: running")
    time.sleep(2)  # the tty1 shell starts beside the command
    client = api.connect(f"127.0.0.1::{port}", password=None)
    client.refreshScreen()
    if client.screen.size != (720, 400):
        fail(f"text console expected at 720x400, the client has {client.screen.size}")

    # Typed on the VGA console's keyboard, run by the shell on tty1: the
    # arithmetic proves a shell ran it, not that keys were echoed.
    type_line(client, "echo kite-vnc-$((6*7)) >/dev/ttyS0; touch /tmp/typed")
    wait_serial(log, "kite-vnc-42")
    text = wait_serial(log, "vcsa-end-text")
    client.refreshScreen()
    compare(client.screen, vcsa(text, "text"), "text mode")

    type_line(client, "touch /tmp/drm")
    start = time.time()
    while client.screen.size != (1024, 768):
        if time.time() - start > TIMEOUT:
            fail(f"no DesktopSize to 1024x768 after bochs-drm; the client has {client.screen.size}")
        client.refreshScreen(incremental=True)
    print(f"mode switch reached the client: {client.screen.size}", flush=True)
    text = wait_serial(log, "vcsa-end-fb")
    client.refreshScreen()
    compare(client.screen, vcsa(text, "fb"), "bochs-drm fbcon")

    type_line(client, "touch /tmp/done")
    client.disconnect()
    api.shutdown()
    print("linux-console-ok", flush=True)


if __name__ == "__main__":
    main()
