//! Snapshots and migration end to end: kite runs the counter guest (it
//! prints `count=N` every 20 ms of guest time) with `--qmp`; Python's
//! qemu.qmp (tests/snapshot/drive.py) pauses it, snapshots it with
//! `migrate file:...`, and a new kite restores it with `--incoming`; the
//! count must go on from where it was. Damaged snapshots and ones from
//! another configuration are refused with one line and status 2. Two kite
//! processes on 127.0.0.1 hand a running guest over with `migrate tcp:...`.
//!
//! Needs `python3` with `qemu.qmp` (pip install qemu.qmp).

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{kite, temp_file, temp_path};
use kite_testkernels as tk;

/// A kite process with a QMP socket and its serial output in a file.
struct Vm {
    child: Child,
    sock: PathBuf,
    serial: PathBuf,
}

impl Vm {
    fn start(name: &str, args: &[&str]) -> Vm {
        let sock = temp_path(&format!("{name}.qmp"));
        let serial = temp_path(&format!("{name}.serial"));
        let _ = std::fs::remove_file(&serial);
        let _ = std::fs::remove_file(&sock);
        let qmp = format!("unix:{},server=on,wait=off", sock.display());
        let serial_arg = format!("file={}", serial.display());
        let mut all: Vec<&str> = vec!["run", "--serial", &serial_arg, "--qmp", &qmp];
        all.extend_from_slice(args);
        let child = Command::new(env!("CARGO_BIN_EXE_kite"))
            .args(&all)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start kite");
        let mut vm = Vm {
            child,
            sock,
            serial,
        };
        let start = Instant::now();
        while !vm.sock.exists() {
            if let Ok(Some(s)) = vm.child.try_wait() {
                panic!("kite exited with {s}: {}", vm.stderr());
            }
            assert!(start.elapsed() < Duration::from_secs(60), "no QMP socket");
            std::thread::sleep(Duration::from_millis(10));
        }
        vm
    }

    /// Run a drive.py scenario; its stdout.
    fn drive(&self, scenario: &str, arg: Option<&str>) -> String {
        self.drive_args(scenario, arg.as_slice())
    }

    /// Run a drive.py scenario with arguments; its stdout.
    fn drive_args(&self, scenario: &str, args: &[&str]) -> String {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshot/drive.py");
        let mut cmd = Command::new("python3");
        cmd.arg(&script)
            .arg(&self.sock)
            .arg(&self.serial)
            .arg(scenario)
            .args(args);
        let out = cmd
            .output()
            .expect("python3 (with `pip install qemu.qmp`) must be installed");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "drive.py {scenario}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    fn wait_exit(&mut self) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s.code();
            }
            if start.elapsed() > Duration::from_secs(60) {
                let _ = self.child.kill();
                panic!("kite did not exit");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn stderr(&mut self) -> String {
        let mut s = String::new();
        if let Some(e) = self.child.stderr.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The number after `key ` in drive.py's output.
fn value(out: &str, key: &str) -> u64 {
    out.lines()
        .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {out:?}"))
}

fn counter_args(kernel: &str, memory: &str, cpus: &str) -> Vec<String> {
    [
        "--engine", "emu", "--kernel", kernel, "--memory", memory, "--cpus", cpus,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn a_paused_snapshot_restores_paused_and_counts_on_from_where_it_stopped() {
    let k = temp_file("snap-paused-counter.elf", &tk::counter());
    let args = counter_args(&k, "64M", "1");
    let snap = temp_path("snap-paused.kite");
    let _ = std::fs::remove_file(&snap);
    let uri = format!("file:{}", snap.display());

    let mut a = Vm::start("snap-paused-a", &strs(&args));
    let n = value(&a.drive("pause-snapshot", Some(&uri)), "COUNT");
    // Killed, as a crash would: the file is all that is left.
    a.kill();
    assert!(std::fs::metadata(&snap).unwrap().len() > 0);

    let mut restore_args = args.clone();
    restore_args.extend(["--incoming".to_string(), uri.clone()]);
    let mut b = Vm::start("snap-paused-b", &strs(&restore_args));
    let first = value(&b.drive("cont", None), "COUNT");
    assert_eq!(first, n + 1, "the restored guest goes on after count {n}");
    b.kill();
    let _ = b.stderr();
}

/// Snapshot the paused counter guest on engine `from`, restore it on `to`:
/// it must count on from exactly where it stopped.
fn paused_snapshot_across(from: &str, to: &str) {
    let name = format!("snap-{from}-{to}");
    let k = temp_file(&format!("{name}.elf"), &tk::counter());
    let mut args = counter_args(&k, "64M", "1");
    args[1] = from.to_string();
    let snap = temp_path(&format!("{name}.kite"));
    let _ = std::fs::remove_file(&snap);
    let uri = format!("file:{}", snap.display());
    let mut a = Vm::start(&format!("{name}-a"), &strs(&args));
    let n = value(&a.drive("pause-snapshot", Some(&uri)), "COUNT");
    a.kill();
    let mut restore_args = args.clone();
    restore_args[1] = to.to_string();
    restore_args.extend(["--incoming".to_string(), uri]);
    let mut b = Vm::start(&format!("{name}-b"), &strs(&restore_args));
    let first = value(&b.drive("cont", None), "COUNT");
    // The pause may land inside the line of count n + 1 (a port write a
    // byte): its tail then opens the restored guest's output.
    let text = std::fs::read_to_string(&b.serial).unwrap_or_default();
    let split = !text.starts_with(tk::COUNTER_PREFIX);
    assert_eq!(
        first,
        n + 1 + u64::from(split),
        "saved on {from} after count {n}, restored on {to} (output {:?})",
        text.lines().next()
    );
    b.kill();
    let _ = b.stderr();
}

/// Beyond QEMU: a snapshot of the emu engine restores on kvm, and back.
#[test]
fn a_snapshot_moves_between_the_engines_both_ways() {
    if !common::kvm_available("a_snapshot_moves_between_the_engines_both_ways") {
        return;
    }
    paused_snapshot_across("kvm", "kvm");
    paused_snapshot_across("emu", "kvm");
    paused_snapshot_across("kvm", "emu");
}

#[test]
fn a_running_snapshot_restores_running_mid_count() {
    let k = temp_file("snap-running-counter.elf", &tk::counter());
    let args = counter_args(&k, "64M", "2");
    let snap = temp_path("snap-running.kite");
    let _ = std::fs::remove_file(&snap);
    let uri = format!("file:{}", snap.display());

    let mut a = Vm::start("snap-running-a", &strs(&args));
    let out = a.drive("running-snapshot", Some(&uri));
    let (before, after) = (value(&out, "BEFORE"), value(&out, "AFTER"));
    a.kill();

    let mut restore_args = args.clone();
    restore_args.extend(["--incoming".to_string(), uri]);
    let b = Vm::start("snap-running-b", &strs(&restore_args));
    let start = Instant::now();
    let first = loop {
        let text = std::fs::read_to_string(&b.serial).unwrap_or_default();
        if let Some(c) = text
            .lines()
            .filter_map(|l| l.strip_prefix(tk::COUNTER_PREFIX))
            .find_map(|h| u64::from_str_radix(h, 16).ok())
        {
            break c;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no count after restore"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(
        (before..=after + 1).contains(&first),
        "restored at count {first}, the snapshot was taken between {before} and {after}"
    );
}

#[test]
fn damaged_and_foreign_snapshots_are_refused_with_status_2() {
    let k = temp_file("snap-bad-counter.elf", &tk::counter());
    let args = counter_args(&k, "64M", "1");
    let snap = temp_path("snap-bad.kite");
    let _ = std::fs::remove_file(&snap);
    let uri = format!("file:{}", snap.display());
    let mut a = Vm::start("snap-bad-a", &strs(&args));
    a.drive("pause-snapshot", Some(&uri));
    a.kill();
    let good = std::fs::read(&snap).unwrap();

    let try_restore = |bytes: &[u8], memory: &str, cpus: &str, want: &str| {
        let p = temp_path("snap-bad-try.kite");
        std::fs::write(&p, bytes).unwrap();
        let mut run_args = vec![
            "run".to_string(),
            "--serial".to_string(),
            "none".to_string(),
        ];
        run_args.extend(counter_args(&k, memory, cpus));
        run_args.extend(["--incoming".to_string(), format!("file:{}", p.display())]);
        let r = kite(&strs(&run_args), b"");
        assert_eq!(r.status, Some(2), "{want}: {}", r.stderr);
        let line = r.single_stderr_line();
        assert!(line.contains(want), "{want}: {line}");
    };
    try_restore(&good[..good.len() / 2], "64M", "1", "truncated");
    try_restore(&good[..good.len() - 1], "64M", "1", "truncated");
    let mut flipped = good.clone();
    let at = flipped.len() / 2;
    flipped[at] ^= 0x10;
    try_restore(&flipped, "64M", "1", "checksum");
    try_restore(b"hello", "64M", "1", "not a Kite snapshot");
    try_restore(&good, "128M", "1", "--memory 64 MiB");
    try_restore(&good, "64M", "2", "--cpus 1");

    // A missing file and a bad URI: one line, status 2.
    for (incoming, want) in [
        ("file:/nonexistent/kite.snap", "No such file"),
        ("exec:cat", "file:PATH or tcp:HOST:PORT"),
    ] {
        let mut run_args = vec!["run".to_string(), "--serial".into(), "none".into()];
        run_args.extend(counter_args(&k, "64M", "1"));
        run_args.extend(["--incoming".to_string(), incoming.to_string()]);
        let r = kite(&strs(&run_args), b"");
        assert_eq!(r.status, Some(2), "{incoming}: {}", r.stderr);
        assert!(r.single_stderr_line().contains(want), "{}", r.stderr);
    }
    // Two --incoming: refused.
    let mut run_args = vec!["run".to_string(), "--serial".into(), "none".into()];
    run_args.extend(counter_args(&k, "64M", "1"));
    run_args.extend([
        "--incoming".to_string(),
        uri.clone(),
        "--incoming".to_string(),
        uri,
    ]);
    let r = kite(&strs(&run_args), b"");
    assert_eq!(r.status, Some(2), "{}", r.stderr);
}

/// A free TCP port on 127.0.0.1 (bound and released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_running_guest_moves_to_another_kite_over_tcp() {
    let k = temp_file("snap-tcp-counter.elf", &tk::counter());
    let args = counter_args(&k, "64M", "2");
    let port = free_port();
    let uri = format!("tcp:127.0.0.1:{port}");
    let mut dest_args = args.clone();
    dest_args.extend(["--incoming".to_string(), uri.clone()]);
    let mut dest = Vm::start("snap-tcp-dest", &strs(&dest_args));
    let mut src = Vm::start("snap-tcp-src", &strs(&args));
    let out = src.drive("handover", Some(&uri));
    let after = value(&out, "AFTER");
    assert_eq!(
        src.wait_exit(),
        Some(0),
        "the source quits when told, after the handover"
    );
    // The destination counts on from the source's count.
    counts_on_from(&src, &mut dest, after);
    dest.kill();
}

/// The destination counts on from exactly where the source stopped: the
/// source's serial output followed by the destination's is one unbroken
/// count from 0 (a line the guest was printing at the handover is split
/// across the two files), the source's last whole line is `after`, and
/// the destination prints at least three more.
fn counts_on_from(src: &Vm, dest: &mut Vm, after: u64) {
    let before = std::fs::read_to_string(&src.serial).unwrap_or_default();
    let src_counts = whole_counts(&before);
    assert_eq!(
        src_counts.last(),
        Some(&after),
        "the source's last whole line against AFTER: {before:?}"
    );
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(&dest.serial).unwrap_or_default();
        let counts = whole_counts(&format!("{before}{text}"));
        if counts.len() as u64 >= after + 4 {
            for (i, c) in counts.iter().enumerate() {
                assert_eq!(
                    *c, i as u64,
                    "count {i} across the handover: {before:?} then {text:?}"
                );
            }
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the destination does not count: {text:?} {}",
            dest.stderr()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The counts of the counter kernel's whole lines in `text` (a line not yet
/// ended by its newline is left out); any other line fails the test.
fn whole_counts(text: &str) -> Vec<u64> {
    whole_lines(text)
        .lines()
        .map(|l| {
            l.strip_prefix(tk::COUNTER_PREFIX)
                .and_then(|h| u64::from_str_radix(h, 16).ok())
                .unwrap_or_else(|| panic!("a broken line {l:?} in {text:?}"))
        })
        .collect()
}

/// `text` up to its last newline: a line the guest is still printing is
/// left out (its digits may be cut).
fn whole_lines(text: &str) -> &str {
    &text[..text.rfind('\n').map_or(0, |n| n + 1)]
}

#[test]
fn a_deferred_destination_listens_where_migrate_incoming_says() {
    let k = temp_file("snap-defer-counter.elf", &tk::counter());
    let args = counter_args(&k, "64M", "1");
    let mut dest_args = args.clone();
    dest_args.extend(["--incoming".to_string(), "defer".to_string()]);
    let mut dest = Vm::start("snap-defer-dest", &strs(&dest_args));
    let mut src = Vm::start("snap-defer-src", &strs(&args));
    src.drive("not-deferred", None);
    // An address someone else holds is refused; the destination waits on.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_uri = format!("tcp:{}", busy.local_addr().unwrap());
    let uri = format!("tcp:127.0.0.1:{}", free_port());
    let out = dest.drive_args("deferred", &[&uri, &busy_uri]);
    assert!(out.contains("LISTENING"), "{out}");
    let out = src.drive("handover", Some(&uri));
    let after = value(&out, "AFTER");
    assert_eq!(src.wait_exit(), Some(0));
    counts_on_from(&src, &mut dest, after);

    // Without --qmp nothing could name the stream: one line, status 2.
    let mut run_args = vec!["run".to_string()];
    run_args.extend(args.iter().cloned());
    run_args.extend(["--incoming".to_string(), "defer".to_string()]);
    let r = kite(&strs(&run_args), b"");
    assert_eq!(r.status, Some(2), "{}", r.stderr);
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.contains("--qmp"), "{}", r.stderr);

    // A deferred destination told to quit before any stream ends with 0,
    // and so does one listening on TCP.
    for incoming in [
        "defer".to_string(),
        format!("tcp:127.0.0.1:{}", free_port()),
    ] {
        let mut waiting_args = args.clone();
        waiting_args.extend(["--incoming".to_string(), incoming.clone()]);
        let mut waiting = Vm::start("snap-defer-quit", &strs(&waiting_args));
        waiting.drive("quit", None);
        assert_eq!(
            waiting.wait_exit(),
            Some(0),
            "{incoming}: {}",
            waiting.stderr()
        );
    }
}

#[test]
fn a_destination_whose_source_drops_exits_with_one_line() {
    let k = temp_file("snap-drop-counter.elf", &tk::counter());
    let port = free_port();
    let mut run_args = vec!["run".to_string(), "--serial".into(), "none".into()];
    run_args.extend(counter_args(&k, "64M", "1"));
    run_args.extend(["--incoming".to_string(), format!("tcp:127.0.0.1:{port}")]);
    let child = Command::new(env!("CARGO_BIN_EXE_kite"))
        .args(strs(&run_args))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A source that sends the start of a stream and vanishes.
    let start = Instant::now();
    let mut s = loop {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(_) if start.elapsed() < Duration::from_secs(30) => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("no listener: {e}"),
        }
    };
    std::io::Write::write_all(&mut s, b"KITESNAP\x01\x00\x00\x00").unwrap();
    // One stream only: a second source is turned away while the first sends.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "a second incoming stream was let in"
    );
    drop(s);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("truncated"), "{err}");
}

/// The numbers after `prefix` on the whole lines of a serial file, in
/// order.
fn numbers(path: &Path, prefix: &str) -> Vec<u64> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    whole_lines(&text)
        .lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .filter_map(|h| u64::from_str_radix(h, 16).ok())
        .collect()
}

#[test]
fn a_guest_dirtying_memory_moves_live_and_no_page_is_stale() {
    let k = temp_file("snap-load.elf", &tk::memory_load());
    let args = counter_args(&k, "64M", "1");
    let port = free_port();
    let uri = format!("tcp:127.0.0.1:{port}");
    let mut dest_args = args.clone();
    dest_args.extend(["--incoming".to_string(), uri.clone()]);
    let mut dest = Vm::start("snap-load-dest", &strs(&dest_args));
    let mut src = Vm::start("snap-load-src", &strs(&args));
    let out = src.drive("handover", Some(&uri));
    let after = value(&out, "AFTER");
    assert_eq!(
        src.wait_exit(),
        Some(0),
        "the source quits when told, after the handover"
    );
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(&dest.serial).unwrap_or_default();
        assert!(
            !text.contains(tk::STALE_PAGE),
            "a page lost its write: {text}"
        );
        let sweeps = numbers(&dest.serial, tk::SWEEP_PREFIX);
        if sweeps.len() >= 3 {
            // Sweeps are printed every 16: the first on the destination
            // follows the source's last.
            assert!(
                sweeps[0] > after && sweeps[0] <= after + 32,
                "destination's first sweep {} after the source's {after}",
                sweeps[0]
            );
            assert!(sweeps.windows(2).all(|w| w[1] == w[0] + 16), "{sweeps:?}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the destination does not sweep: {text:?} {}",
            dest.stderr()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_source_whose_peer_hangs_up_keeps_running() {
    let k = temp_file("snap-hangup-counter.elf", &tk::counter());
    let args = counter_args(&k, "64M", "1");
    // A "destination" that takes a few bytes and hangs up.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let peer = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 64];
        let _ = s.read(&mut buf);
        drop(s);
    });
    let src = Vm::start("snap-hangup-src", &strs(&args));
    let out = src.drive("dropped", Some(&format!("tcp:127.0.0.1:{port}")));
    assert!(out.contains("ERROR"), "{out}");
    peer.join().unwrap();
}

/// `kite run` arguments for Debian's amd64 kernel (scripts/guests.sh) on
/// emu with 256M and `disks` (`--disk` values), running the shell commands
/// `script` and powering off.
fn linux_args(script: &[&str], disks: &[String]) -> Vec<String> {
    let guest = common::guest_dir("amd64");
    assert!(
        guest.join(".layout-virtio").exists(),
        "the amd64 guest lacks the virtio modules: run scripts/guests.sh"
    );
    let mut args: Vec<String> = ["--engine", "emu", "--memory", "256M", "--no-reboot"]
        .map(String::from)
        .to_vec();
    for (flag, file) in [("--kernel", "vmlinuz"), ("--initrd", "initrd.gz")] {
        args.push(flag.to_string());
        args.push(guest.join(file).display().to_string());
    }
    for d in disks {
        args.push("--disk".to_string());
        args.push(d.clone());
    }
    args.push("--cmdline".to_string());
    args.push(format!(
        "console=ttyS0 panic=-1 quiet kite_cmd=\"{}\"",
        script.join("; ")
    ));
    args
}

/// The guest of `linux_args` on `vm` powered off with status 0 after
/// printing `read_back` (what it read from its disk) and WROTE-AFTER, with
/// no kernel trouble in its log.
fn linux_finished(vm: &mut Vm, read_back: &str) {
    let status = vm.wait_exit();
    let out = std::fs::read_to_string(&vm.serial).unwrap_or_default();
    assert_eq!(status, Some(0), "{out}\n{}", vm.stderr());
    assert!(
        out.contains(read_back),
        "the guest did not read its disk's {read_back:?} back:\n{out}"
    );
    assert!(out.contains("WROTE-AFTER"), "{out}");
    for t in common::KERNEL_TROUBLE {
        assert!(!out.contains(t), "{t} in the guest's log:\n{out}");
    }
}

/// Debian's kernel (scripts/guests.sh) on emu writes to a virtio disk,
/// is snapshotted paused and killed; the restored guest reads back what
/// it wrote (from the disk, its cache dropped) and writes more through the
/// restored virtqueue, then powers off.
#[test]
fn a_linux_guest_restored_from_a_snapshot_finds_its_disk_writes_and_writes_more() {
    let disk = temp_path("snap-linux.img");
    std::fs::write(&disk, vec![0u8; 4 << 20]).unwrap();
    let script = [
        "echo KITE-BEFORE-SNAPSHOT-41 | dd of=/dev/vda conv=fsync 2>/dev/null",
        "echo SNAP-NOW",
        "sleep 2",
        "echo 3 > /proc/sys/vm/drop_caches",
        "echo read=$(head -c 24 /dev/vda)",
        "echo KITE-AFTER-RESTORE-42 | dd of=/dev/vda bs=512 seek=8 conv=fsync 2>/dev/null",
        "echo WROTE-AFTER",
    ];
    let args = linux_args(&script, &[disk.display().to_string()]);
    let args = strs(&args);
    let snap = temp_path("snap-linux.kite");
    let _ = std::fs::remove_file(&snap);
    let uri = format!("file:{}", snap.display());
    let mut a = Vm::start("snap-linux-a", &args);
    a.drive("linux-snapshot", Some(&uri));
    a.kill();

    let mut restore_args = args.clone();
    restore_args.extend(["--incoming", &uri]);
    let mut b = Vm::start("snap-linux-b", &restore_args);
    b.drive("cont-only", None);
    linux_finished(&mut b, "read=KITE-BEFORE-SNAPSHOT-41");
    let image = std::fs::read(&disk).unwrap();
    assert!(image.starts_with(b"KITE-BEFORE-SNAPSHOT-41\n"));
    assert_eq!(&image[4096..4096 + 22], b"KITE-AFTER-RESTORE-42\n");
}

/// Debian's kernel on emu, with a virtio disk it writes and an IDE disk,
/// moves live over TCP to another Kite on this host while it writes: the
/// source hands the disk images over (their locks) and stays paused
/// (postmigrate; `cont` and `system_reset` refused while the destination
/// holds them); the destination takes them, reads back what the source
/// wrote, writes more and powers off. Nothing written on either side is
/// lost.
#[test]
fn a_linux_guest_writing_its_disks_moves_live_and_the_destination_gets_them() {
    let disk = temp_path("live-linux.img");
    std::fs::write(&disk, vec![0u8; 4 << 20]).unwrap();
    let ide = temp_path("live-linux-ide.img");
    std::fs::write(&ide, vec![0u8; 1 << 20]).unwrap();
    // Sector 8 + i gets tick i: the writes go on through the migration.
    let script = [
        "echo KITE-BEFORE-MIGRATION-41 | dd of=/dev/vda conv=fsync 2>/dev/null",
        "echo SNAP-NOW",
        "i=0; while [ $i -lt 40 ]; do echo tick-$i | dd of=/dev/vda bs=512 seek=$((8 + i)) conv=fsync 2>/dev/null; sleep 0.1; i=$((i + 1)); done",
        "echo 3 > /proc/sys/vm/drop_caches",
        "echo read=$(head -c 25 /dev/vda)",
        "echo KITE-AFTER-MIGRATION-42 | dd of=/dev/vda bs=512 seek=100 conv=fsync 2>/dev/null",
        "echo WROTE-AFTER",
    ];
    let disks = [
        disk.display().to_string(),
        format!("{},if=ide", ide.display()),
    ];
    let args = linux_args(&script, &disks);
    let args = strs(&args);
    let uri = format!("tcp:127.0.0.1:{}", free_port());
    let mut dest_args = args.clone();
    dest_args.extend(["--incoming", &uri]);
    let mut dest = Vm::start("live-linux-dest", &dest_args);
    let mut src = Vm::start("live-linux-src", &args);
    let dest_sock = dest.sock.display().to_string();
    let out = src.drive_args("linux-live", &[&uri, &dest_sock]);
    assert!(out.contains("HANDED-OVER"), "{out}");
    assert_eq!(src.wait_exit(), Some(0), "the source quits when told");

    linux_finished(&mut dest, "read=KITE-BEFORE-MIGRATION-41");
    let image = std::fs::read(&disk).unwrap();
    assert!(image.starts_with(b"KITE-BEFORE-MIGRATION-41\n"));
    for i in 0..40 {
        let tick = format!("tick-{i}\n");
        let at = (8 + i) * 512;
        assert_eq!(
            &image[at..at + tick.len()],
            tick.as_bytes(),
            "tick {i} is missing from the disk"
        );
    }
    assert_eq!(&image[51200..51200 + 24], b"KITE-AFTER-MIGRATION-42\n");
}

#[test]
fn a_destination_of_another_configuration_refuses_and_the_source_runs_on() {
    let k = temp_file("snap-mismatch-counter.elf", &tk::counter());
    let port = free_port();
    let uri = format!("tcp:127.0.0.1:{port}");
    // The destination has twice the memory: it must refuse the stream.
    let mut dest_args = counter_args(&k, "128M", "1");
    dest_args.extend(["--incoming".to_string(), uri.clone()]);
    let mut dest = Vm::start("snap-mismatch-dest", &strs(&dest_args));
    let src = Vm::start("snap-mismatch-src", &strs(&counter_args(&k, "64M", "1")));
    let out = src.drive("dropped", Some(&uri));
    assert!(
        out.contains("--memory 64 MiB"),
        "the source is told why: {out}"
    );
    assert_eq!(dest.wait_exit(), Some(1));
    let err = dest.stderr();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--memory 64 MiB"), "{err}");
}

#[test]
fn a_cancelled_snapshot_leaves_no_file_and_the_guest_runs_on() {
    let k = temp_file("snap-cancel-counter.elf", &tk::counter());
    let snap = temp_path("snap-cancel.kite");
    let _ = std::fs::remove_file(&snap);
    let vm = Vm::start("snap-cancel", &strs(&counter_args(&k, "256M", "1")));
    let out = vm.drive("cancel", Some(&format!("file:{}", snap.display())));
    let mut part = snap.clone().into_os_string();
    part.push(".part");
    assert!(
        !Path::new(&part).exists(),
        "a temporary file was left behind"
    );
    // It may have finished before the cancel arrived; then the file is whole.
    if out.contains("ENDED cancelled") {
        assert!(!snap.exists(), "a cancelled snapshot left a file");
    } else {
        assert!(out.contains("ENDED completed"), "{out}");
        assert!(std::fs::metadata(&snap).unwrap().len() > 0);
    }
}

/// SeaBIOS with a VGA (fw_cfg, PAM shadowing, the VGA BIOS, VBE, video
/// memory): the restored machine's screen is the saved one, pixel for pixel.
#[test]
fn a_firmware_machine_with_a_display_restores_its_screen() {
    let shot_a = temp_path("snap-fw-a.png");
    let shot_b = temp_path("snap-fw-b.png");
    let snap = temp_path("snap-fw.kite");
    let _ = std::fs::remove_file(&snap);
    let uri = format!("file:{}", snap.display());
    let args = [
        "--engine",
        "emu",
        "--memory",
        "128M",
        "--boot",
        "c,fail=wait",
        "--screenshot-on-exit",
    ];
    let exit_a = temp_path("snap-fw-exit-a.png").display().to_string();
    let exit_b = temp_path("snap-fw-exit-b.png").display().to_string();
    let mut a_args = args.to_vec();
    a_args.push(&exit_a);
    let mut a = Vm::start("snap-fw-a", &a_args);
    let a_png = shot_a.display().to_string();
    a.drive_args("screen-snapshot", &[&uri, &a_png]);
    a.kill();
    let mut b_args = args.to_vec();
    b_args.extend([exit_b.as_str(), "--incoming", &uri]);
    let b = Vm::start("snap-fw-b", &b_args);
    let b_png = shot_b.display().to_string();
    b.drive_args("screen-restored", &[&b_png]);
    let a_bytes = std::fs::read(&shot_a).unwrap();
    let b_bytes = std::fs::read(&shot_b).unwrap();
    // A blank 720x400 screen is about 5 KB of PNG; SeaBIOS's text makes 30+.
    assert!(a_bytes.len() > 10_000, "the screen was blank when saved");
    assert!(
        a_bytes == b_bytes,
        "the restored screen differs ({} vs {} bytes of PNG)",
        a_bytes.len(),
        b_bytes.len()
    );
}
