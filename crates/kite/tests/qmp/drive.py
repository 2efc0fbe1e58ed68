#!/usr/bin/env python3
"""Drive a running kite over QMP with the qemu.qmp library.

usage: drive.py SOCKET SERIAL_FILE SCENARIO
  counter:   the counter guest: query-status, stop (the count stays), cont
             (it moves on), system_reset (RESET, the count restarts), quit
             (SHUTDOWN host-qmp-quit).
  powerdown: a Linux guest: wait for a line POWER-READY in SERIAL_FILE,
             system_powerdown (POWERDOWN), then SHUTDOWN guest-shutdown.
Exits 0 when every check held, else prints what failed and exits 1.
"""

import asyncio
import re
import sys
import time

from qemu.qmp import QMPClient


def last_count(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            counts = re.findall(r"count=([0-9a-f]{16})", f.read())
    except FileNotFoundError:
        return None
    return int(counts[-1], 16) if counts else None


async def wait_until(pred, what, timeout=60.0):
    start = time.monotonic()
    while not pred():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def next_event(qmp, name, timeout=60.0):
    async def get():
        while True:
            ev = await qmp.events.get()
            if ev["event"] == name:
                return ev
    return await asyncio.wait_for(get(), timeout)


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


async def counter(qmp, serial):
    await wait_until(lambda: (last_count(serial) or 0) >= 3, "the guest to count")
    st = await qmp.execute("query-status")
    check(st == {"running": True, "singlestep": False, "status": "running"}, f"status {st}")
    await qmp.execute("stop")
    await next_event(qmp, "STOP")
    check((await qmp.execute("query-status"))["status"] == "paused", "not paused")
    n = last_count(serial)
    await asyncio.sleep(0.5)
    check(last_count(serial) == n, f"the guest ran while paused: {n} -> {last_count(serial)}")
    await qmp.execute("cont")
    await next_event(qmp, "RESUME")
    await wait_until(lambda: last_count(serial) >= n + 3, "the guest to go on after cont")
    # Reset: the guest boots again and counts from 0.
    before = last_count(serial)
    await qmp.execute("system_reset")
    ev = await next_event(qmp, "RESET")
    check(ev["data"] == {"guest": False, "reason": "host-qmp-system-reset"}, f"RESET {ev}")
    await wait_until(lambda: last_count(serial) < before, "the count to restart after reset")
    ver = await qmp.execute("query-version")
    check("kite" in ver["package"], f"version {ver}")
    cmds = {c["name"] for c in await qmp.execute("query-commands")}
    check({"stop", "cont", "system_powerdown", "quit"} <= cmds, f"commands {cmds}")
    await qmp.execute("quit")
    ev = await next_event(qmp, "SHUTDOWN")
    check(ev["data"] == {"guest": False, "reason": "host-qmp-quit"}, f"SHUTDOWN {ev}")


async def powerdown(qmp, serial):
    def ready():
        try:
            with open(serial, encoding="utf-8", errors="replace") as f:
                return "POWER-READY" in f.read().splitlines()
        except FileNotFoundError:
            return False
    await wait_until(ready, "the guest's power-button listener", timeout=120)
    await qmp.execute("system_powerdown")
    await next_event(qmp, "POWERDOWN")
    ev = await next_event(qmp, "SHUTDOWN", timeout=60)
    check(ev["data"] == {"guest": True, "reason": "guest-shutdown"}, f"SHUTDOWN {ev}")


async def main():
    sock, serial, scenario = sys.argv[1:4]
    qmp = QMPClient("kite-test")
    await qmp.connect(sock)
    check(qmp.greeting is not None, "no greeting")
    await {"counter": counter, "powerdown": powerdown}[scenario](qmp, serial)
    try:
        await qmp.disconnect()
    except Exception:  # the server went away first: expected after quit
        pass
    print(f"drive.py {scenario}: ok")


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except Exception as e:  # report any failure as one line and status 1
        print(f"drive.py: FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
