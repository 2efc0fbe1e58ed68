#!/usr/bin/env python3
"""Drive snapshots and migrations of a running kite with the qemu.qmp library.

usage: drive.py SOCKET SERIAL_FILE SCENARIO [ARG]
  pause-snapshot URI: the counter guest counts; stop (STOP; the count stays
      put for half a second), migrate to URI while paused (MIGRATION
      completed, query-migrate completed with its byte counts), the count
      still put; prints "COUNT n" with the last count.
  running-snapshot URI: migrate to URI while the guest runs; prints
      "BEFORE n" and "AFTER m", the counts around the snapshot, and checks
      the guest runs on afterwards.
  cont: cont (RESUME); the guest counts on; prints "COUNT n", the first
      count it printed.
  handover URI: migrate to a peer while running: completed, the source
      stays paused as postmigrate; quit (SHUTDOWN).
  linux-live URI DEST_SOCKET: wait for a line SNAP-NOW in SERIAL_FILE,
      migrate to URI while the guest runs (and writes its disk): completed,
      postmigrate; once the destination (its QMP at DEST_SOCKET) runs, cont
      and system_reset are refused (it holds the disks); quit.
  dropped URI: migrate to a peer that hangs up: MIGRATION failed, the
      guest runs on.
  linux-snapshot URI: wait for a line SNAP-NOW in SERIAL_FILE, stop,
      migrate to URI.
  cont-only: a restored paused guest: cont.
  screen-snapshot URI PNG: (firmware with a display) after 3 s, stop,
      screendump to PNG, migrate to URI.
  screen-restored PNG: the restored paused machine's screendump to PNG.
  cancel URI: migrate, cancel at once: ends cancelled or completed, and
      the guest runs on.
  deferred URI BUSY_URI: a destination started with --incoming defer:
      inmigrate; migrate-incoming refuses a bad URI and BUSY_URI (an
      address in use), accepts URI, then refuses a second one; prints
      "LISTENING".
  not-deferred: migrate-incoming is refused (no --incoming defer).
  quit: quit (SHUTDOWN).
Exits 0 when every check held, else prints what failed and exits 1.
"""

import asyncio
import re
import sys
import time

from qemu.qmp import QMPClient


def counts(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return [int(c, 16) for c in re.findall(r"(?:count|sweep)=([0-9a-f]{16})\n", f.read())]
    except FileNotFoundError:
        return []


def last_count(path):
    c = counts(path)
    return c[-1] if c else None


async def wait_until(pred, what, timeout=60.0):
    start = time.monotonic()
    while not pred():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def next_event(qmp, name, timeout=60.0, data=None):
    async def get():
        while True:
            ev = await qmp.events.get()
            if ev["event"] == name and (data is None or ev.get("data") == data):
                return ev
    try:
        return await asyncio.wait_for(get(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"no {name} event ({data}) within {timeout} s") from None


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


async def migrate_and_wait(qmp, uri):
    await qmp.execute("migrate", {"uri": uri})
    # Any end: a failed migration says why (query-migrate's error) at once.
    while True:
        ev = await next_event(qmp, "MIGRATION")
        if ev["data"]["status"] in ("completed", "failed", "cancelled"):
            break
    info = await qmp.execute("query-migrate")
    check(info["status"] == "completed", f"query-migrate {info}")
    ram = info["ram"]
    check(ram["transferred"] > 0 and ram["remaining"] == 0, f"query-migrate ram {ram}")
    check(ram["transferred"] == ram["total"], f"query-migrate ram {ram}")
    check("downtime" in info and "total-time" in info, f"query-migrate {info}")
    return info


async def pause_snapshot(qmp, serial, uri):
    await wait_until(lambda: (last_count(serial) or 0) >= 3, "the guest to count")
    await qmp.execute("stop")
    await next_event(qmp, "STOP")
    check((await qmp.execute("query-status"))["status"] == "paused", "not paused")
    n = last_count(serial)
    await asyncio.sleep(0.5)
    check(last_count(serial) == n, f"the guest ran while paused: {n} -> {last_count(serial)}")
    await migrate_and_wait(qmp, uri)
    check((await qmp.execute("query-status"))["status"] == "paused", "a snapshot resumed a paused guest")
    await asyncio.sleep(0.2)
    check(last_count(serial) == n, "the guest ran during the snapshot")
    print(f"COUNT {n}")


async def running_snapshot(qmp, serial, uri):
    await wait_until(lambda: (last_count(serial) or 0) >= 3, "the guest to count")
    before = last_count(serial)
    await migrate_and_wait(qmp, uri)
    after = last_count(serial)
    check((await qmp.execute("query-status"))["status"] == "running", "the guest stayed paused")
    await wait_until(lambda: last_count(serial) >= after + 3, "the guest to run on after the snapshot")
    print(f"BEFORE {before}")
    print(f"AFTER {after}")


async def restored(qmp):
    """Wait for the incoming snapshot to be applied (status inmigrate until then)."""
    async def status():
        while True:
            st = (await qmp.execute("query-status"))["status"]
            if st != "inmigrate":
                return st
            await asyncio.sleep(0.01)
    return await asyncio.wait_for(status(), 120)


async def cont(qmp, serial):
    await restored(qmp)
    check((await qmp.execute("query-status"))["status"] == "paused", "a paused snapshot restored running")
    await asyncio.sleep(0.3)
    check(counts(serial) == [], f"the restored guest ran before cont: {counts(serial)}")
    await qmp.execute("cont")
    await next_event(qmp, "RESUME")
    await wait_until(lambda: len(counts(serial)) >= 3, "the restored guest to count")
    print(f"COUNT {counts(serial)[0]}")


async def handover(qmp, serial, uri):
    await wait_until(lambda: (last_count(serial) or 0) >= 3, "the guest to count")
    print(f"BEFORE {last_count(serial)}", flush=True)
    await migrate_and_wait(qmp, uri)
    await handed_over(qmp)
    n = last_count(serial)
    await asyncio.sleep(0.3)
    check(last_count(serial) == n, "the source ran on after the handover")
    print(f"AFTER {n}", flush=True)
    await quit_source(qmp)


async def handed_over(qmp):
    """The source after a completed migration: paused, as postmigrate."""
    st = await qmp.execute("query-status")
    check(st["status"] == "postmigrate" and not st["running"], f"query-status {st}")


async def quit_source(qmp):
    await qmp.execute("quit")
    ev = await next_event(qmp, "SHUTDOWN")
    check(ev["data"]["reason"] == "host-qmp-quit", f"SHUTDOWN {ev}")


async def refused(qmp, command, needle):
    try:
        await qmp.execute(command)
    except Exception as e:  # qemu.qmp's ExecuteError
        check(needle in str(e), f"{command}: {e}")
        return
    raise AssertionError(f"{command} was accepted after the handover")


async def linux_live(qmp, serial, uri, dest_sock):
    await wait_until(lambda: has_line(serial, "SNAP-NOW"), "the guest's SNAP-NOW", timeout=300)
    check((await qmp.execute("query-status"))["status"] == "running", "not running")
    dest = QMPClient("kite-snapshot-test-dest")
    await dest.connect(dest_sock)
    await migrate_and_wait(qmp, uri)
    await handed_over(qmp)
    # The destination has the disks once it runs.
    check(await restored(dest) == "running", "the destination is not running")
    await dest.disconnect()
    await refused(qmp, "cont", "destination holds its disks")
    await refused(qmp, "system_reset", "migrated away")
    await handed_over(qmp)
    print("HANDED-OVER", flush=True)
    await quit_source(qmp)


def has_line(path, line):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return line in (l.strip() for l in f.read().splitlines())
    except FileNotFoundError:
        return False


async def linux_snapshot(qmp, serial, uri):
    await wait_until(lambda: has_line(serial, "SNAP-NOW"), "the guest's SNAP-NOW", timeout=300)
    await qmp.execute("stop")
    await next_event(qmp, "STOP")
    await migrate_and_wait(qmp, uri)
    print("SAVED")


async def cont_only(qmp, serial):
    await restored(qmp)
    check((await qmp.execute("query-status"))["status"] == "paused", "restored running")
    await qmp.execute("cont")
    await next_event(qmp, "RESUME")
    print("RESUMED")


async def screen_snapshot(qmp, serial, uri, png):
    await asyncio.sleep(3)  # SeaBIOS has drawn its banner by then
    await qmp.execute("stop")
    await next_event(qmp, "STOP")
    await qmp.execute("screendump", {"filename": png, "format": "png"})
    await migrate_and_wait(qmp, uri)
    print("SAVED")


async def screen_restored(qmp, serial, png):
    await restored(qmp)
    check((await qmp.execute("query-status"))["status"] == "paused", "restored running")
    await qmp.execute("screendump", {"filename": png, "format": "png"})
    print("SHOT")


async def dropped(qmp, serial, uri):
    await wait_until(lambda: (last_count(serial) or 0) >= 3, "the guest to count")
    await qmp.execute("migrate", {"uri": uri})
    await next_event(qmp, "MIGRATION", data={"status": "failed"})
    info = await qmp.execute("query-migrate")
    check(info["status"] == "failed" and info.get("error-desc"), f"query-migrate {info}")
    check((await qmp.execute("query-status"))["status"] == "running", "the source stopped")
    n = last_count(serial)
    await wait_until(lambda: last_count(serial) >= n + 3, "the source to run on")
    print(f"ERROR {info['error-desc']}")


async def cancel(qmp, serial, uri):
    await wait_until(lambda: (last_count(serial) or 0) >= 3, "the guest to count")
    await qmp.execute("migrate", {"uri": uri})
    await qmp.execute("migrate_cancel")
    async def done():
        while True:
            st = (await qmp.execute("query-migrate"))["status"]
            if st in ("cancelled", "completed", "failed"):
                return st
            await asyncio.sleep(0.01)
    st = await asyncio.wait_for(done(), 60)
    check(st in ("cancelled", "completed"), f"ended {st}")
    n = last_count(serial)
    await wait_until(lambda: last_count(serial) >= n + 3, "the guest to run on after a cancel")
    print(f"ENDED {st}")


async def incoming_refused(qmp, uri, needle):
    try:
        await qmp.execute("migrate-incoming", {"uri": uri})
    except Exception as e:  # qemu.qmp's ExecuteError
        check(needle in str(e), f"migrate-incoming {uri}: {e}")
        return
    raise AssertionError(f"migrate-incoming {uri} was accepted")


async def deferred(qmp, serial, uri, busy_uri):
    st = await qmp.execute("query-status")
    check(st["status"] == "inmigrate" and not st["running"], f"query-status {st}")
    await incoming_refused(qmp, "ftp:somewhere", "ftp")
    await incoming_refused(qmp, busy_uri, "in use")
    await qmp.execute("migrate-incoming", {"uri": uri})
    await incoming_refused(qmp, uri, "already")
    check(counts(serial) == [], "the destination ran before its stream came")
    print("LISTENING", flush=True)


async def not_deferred(qmp, serial):
    await incoming_refused(qmp, "tcp:127.0.0.1:1", "--incoming defer")


async def quit_only(qmp, serial):
    await quit_source(qmp)


async def main():
    sock, serial, scenario = sys.argv[1:4]
    arg = sys.argv[4:]
    qmp = QMPClient("kite-snapshot-test")
    await qmp.connect(sock)
    scenarios = {
        "pause-snapshot": pause_snapshot,
        "running-snapshot": running_snapshot,
        "cont": cont,
        "handover": handover,
        "cancel": cancel,
        "dropped": dropped,
        "linux-snapshot": linux_snapshot,
        "linux-live": linux_live,
        "cont-only": cont_only,
        "screen-snapshot": screen_snapshot,
        "screen-restored": screen_restored,
        "deferred": deferred,
        "not-deferred": not_deferred,
        "quit": quit_only,
    }
    await scenarios[scenario](qmp, serial, *arg)
    try:
        await qmp.disconnect()
    except Exception:  # the server went away first (handover)
        pass


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except Exception as e:  # report any failure as one line and status 1
        print(f"drive.py: FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
