#!/usr/bin/env python3
"""Snapshot, restore and live-migration figures for scripts/bench.sh
(`migrate`): Kite (emu engine) and QEMU TCG side by side, the same Debian
amd64 guest, the same memory, driven through QMP by Python's qemu.qmp.

usage: bench_migrate.py KITE QEMU GUEST_DIR RUNS MEMORY FILL_MIB

Each run, per engine: boot the guest with MEMORY of RAM; it writes FILL_MIB
MiB of non-zero data to its tmpfs (so the memory is really used) and then
counts in a shell loop (a guest that keeps running and dirties a little).
Then:
  snapshot  `migrate` to a file while running (Kite: file:PATH; QEMU 7.2
            has no file: URI, so exec:cat > PATH), timed from the command to
            `completed`; the file's size.
  restore   a new process with `--incoming` / `-incoming` of that file,
            timed from its start to the end of `inmigrate`.
  live      that restored guest is resumed and migrated over TCP on
            127.0.0.1 to a third process (`-incoming tcp:...`): total time
            and downtime as query-migrate reports them, and bytes sent.
Prints one line per figure: medians over RUNS, kite/QEMU ratios.
"""

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from qemu.qmp import QMPClient


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Engine:
    def __init__(self, name, binary, guest, memory, fill_mib, work):
        self.name, self.binary, self.guest, self.memory = name, binary, guest, memory
        self.work = work
        self.cmd = (
            "yes kite-migration-benchmark-fill | head -c 1048576 > /tmp/mib; "
            f"i=0; while [ $i -lt {fill_mib} ]; do cat /tmp/mib; i=$((i+1)); done > /tmp/fill; "
            "echo fill-$((40+2)); i=0; while :; do i=$((i+1)); done"
        )

    def argv(self, sock, serial, incoming=None):
        kernel, initrd = f"{self.guest}/vmlinuz", f"{self.guest}/initrd.gz"
        append = f'console=ttyS0 panic=-1 no_timer_check kite_cmd="{self.cmd}"'
        if self.name == "kite":
            a = [self.binary, "run", "--engine", "emu", "--memory", self.memory,
                 "--kernel", kernel, "--initrd", initrd, "--cmdline", append,
                 "--qmp", f"unix:{sock},server=on,wait=off", "--no-reboot"]
            if incoming:
                a += ["--incoming", incoming]
        else:
            a = [self.binary, "-accel", "tcg", "-m", self.memory, "-display", "none",
                 "-serial", f"file:{serial}", "-monitor", "none", "-no-reboot",
                 "-kernel", kernel, "-initrd", initrd, "-append", append,
                 "-qmp", f"unix:{sock},server=on,wait=off"]
            if incoming:
                a += ["-incoming", incoming]
        return a

    def start(self, tag, incoming=None):
        sock = os.path.join(self.work, f"{self.name}-{tag}.sock")
        serial = os.path.join(self.work, f"{self.name}-{tag}.serial")
        out = open(serial if self.name == "kite" else serial + ".out", "wb")
        p = subprocess.Popen(self.argv(sock, serial, incoming), stdin=subprocess.DEVNULL,
                             stdout=out, stderr=subprocess.STDOUT)
        return p, sock, serial

    def file_uri(self, path, incoming):
        if self.name == "kite":
            return f"file:{path}"
        return f"exec:cat {path}" if incoming else f"exec:cat > {path}"


async def connect(sock, proc, timeout=60):
    start = time.monotonic()
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        qmp = QMPClient("bench")
        try:
            await qmp.connect(sock)
            return qmp
        except Exception:
            if time.monotonic() - start > timeout:
                raise
            await asyncio.sleep(0.02)


async def wait_serial(path, needle, timeout=600):
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            with open(path, "rb") as f:
                if needle in f.read():
                    return
        except FileNotFoundError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"no {needle!r} in {path}")


async def wait_migrated(qmp, timeout=600):
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        info = await qmp.execute("query-migrate")
        status = info.get("status")
        if status == "completed":
            return info
        if status in ("failed", "cancelled"):
            raise RuntimeError(f"migration {status}: {info}")
        await asyncio.sleep(0.01)
    raise RuntimeError("migration did not complete")


async def wait_not_inmigrate(qmp, timeout=600):
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        st = await qmp.execute("query-status")
        if st.get("status") != "inmigrate":
            return st["status"]
        await asyncio.sleep(0.005)
    raise RuntimeError("still inmigrate")


def stop(proc):
    proc.kill()
    proc.wait()


async def one_run(e, run):
    fig = {}
    snap = os.path.join(e.work, f"{e.name}-{run}.snap")
    a, sock, serial = e.start(f"a{run}")
    try:
        qmp = await connect(sock, a)
        await wait_serial(serial, b"fill-42")
        await asyncio.sleep(1)
        t0 = time.monotonic()
        await qmp.execute("migrate", {"uri": e.file_uri(snap, False)})
        await wait_migrated(qmp)
        fig["snapshot s"] = time.monotonic() - t0
        fig["snapshot MiB"] = os.path.getsize(snap) / 2**20
        await qmp.disconnect()
    finally:
        stop(a)

    t0 = time.monotonic()
    b, sock, serial = e.start(f"b{run}", incoming=e.file_uri(snap, True))
    try:
        qmp = await connect(sock, b)
        await wait_not_inmigrate(qmp)
        fig["restore s"] = time.monotonic() - t0
        await qmp.execute("cont")
        os.unlink(snap)
        port = free_port()
        c, csock, _ = e.start(f"c{run}", incoming=f"tcp:127.0.0.1:{port}")
        try:
            cq = await connect(csock, c)
            await asyncio.sleep(0.5)
            await qmp.execute("migrate", {"uri": f"tcp:127.0.0.1:{port}"})
            info = await wait_migrated(qmp)
            fig["live total s"] = info.get("total-time", 0) / 1000
            fig["live downtime ms"] = float(info.get("downtime", 0))
            fig["live sent MiB"] = info.get("ram", {}).get("transferred", 0) / 2**20
            st = await wait_not_inmigrate(cq)
            if st != "running":
                raise RuntimeError(f"{e.name}: the destination is {st} after migration")
            await cq.disconnect()
        finally:
            stop(c)
        try:
            await qmp.disconnect()
        except Exception:
            pass
    finally:
        stop(b)
    print(f"bench: migrate {e.name} run {run}: " +
          ", ".join(f"{k} {v:.2f}" for k, v in fig.items()), file=sys.stderr, flush=True)
    return fig


async def main():
    kite, qemu, guest, runs, memory, fill = sys.argv[1:7]
    with tempfile.TemporaryDirectory(prefix="kite-bench-migrate.") as work:
        engines = [Engine(n, b, guest, memory, int(fill), work)
                   for n, b in (("kite", kite), ("qemu", qemu))]
        figs = {e.name: [] for e in engines}
        for run in range(int(runs)):
            for e in engines:
                figs[e.name].append(await one_run(e, run))
    keys = list(figs["kite"][0].keys())
    for k in keys:
        km = statistics.median(f[k] for f in figs["kite"])
        qm = statistics.median(f[k] for f in figs["qemu"])
        ratio = f"{km / qm:.2f}" if qm else "inf"
        print(f"migrate  {memory} guest, {fill} MiB filled, {k}: kite {km:.2f} | qemu {qm:.2f} | kite/qemu {ratio}")


if __name__ == "__main__":
    asyncio.run(main())
