//! QMP end to end: kite runs a guest with `--qmp`, clients drive it over the
//! socket. Drivers: Python's qemu.qmp library (tests/qmp/drive.py, a client
//! no one here wrote), socat, and raw sockets for hostile input. The guest
//! is the counter kernel (it prints `count=N` every 20 ms of guest time),
//! or Debian's kernel for the ACPI power button.
//!
//! Needs `python3` with `qemu.qmp` (pip install qemu.qmp) and `socat`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{temp_file, temp_path};
use kite_testkernels as tk;

/// A kite process with a QMP socket and its serial output in a file.
struct Vm {
    child: Child,
    sock: PathBuf,
    serial: PathBuf,
}

impl Vm {
    fn start(name: &str, kernel_args: &[&str], extra: &[&str]) -> Vm {
        let sock = temp_path(&format!("{name}.qmp"));
        let serial = temp_path(&format!("{name}.serial"));
        let _ = std::fs::remove_file(&serial);
        let qmp = format!("unix:{},server=on,wait=off", sock.display());
        let serial_arg = format!("file={}", serial.display());
        let mut args: Vec<&str> = vec!["run", "--serial", &serial_arg, "--qmp", &qmp];
        args.extend_from_slice(kernel_args);
        args.extend_from_slice(extra);
        let child = Command::new(env!("CARGO_BIN_EXE_kite"))
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start kite");
        let vm = Vm {
            child,
            sock,
            serial,
        };
        vm.wait_for(|| vm.sock.exists(), "the QMP socket");
        vm
    }

    fn counter(name: &str, engine: &str) -> Vm {
        let k = temp_file(&format!("{name}-counter.elf"), &tk::counter());
        Vm::start(name, &["--engine", engine, "--kernel", &k], &[])
    }

    fn wait_for(&self, mut f: impl FnMut() -> bool, what: &str) {
        let start = Instant::now();
        while !f() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The last count the guest printed.
    fn count(&self) -> Option<u64> {
        let text = std::fs::read_to_string(&self.serial).unwrap_or_default();
        text.lines()
            .rev()
            .filter_map(|l| l.strip_prefix(tk::COUNTER_PREFIX))
            .find_map(|h| {
                (h.len() == 16)
                    .then(|| u64::from_str_radix(h, 16).ok())
                    .flatten()
            })
    }

    fn wait_count(&self, at_least: u64) {
        self.wait_for(
            || self.count().is_some_and(|c| c >= at_least),
            &format!("count {at_least}"),
        );
    }

    /// Wait for the process to end; its status.
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
        let _ = self.child.kill();
        let status = self.child.wait();
        // A failed test shows how kite ended and what it said.
        if std::thread::panicking() {
            eprintln!("kite ended: {status:?}; its stderr:\n{}", self.stderr());
        }
    }
}

/// A raw QMP connection that reads one message per line.
struct Raw {
    w: UnixStream,
    r: BufReader<UnixStream>,
    /// Events read while waiting for a reply (QEMU too sends STOP before
    /// the reply to `stop`).
    events: Vec<serde_json::Value>,
}

impl Raw {
    fn connect(path: &Path) -> Raw {
        let w = UnixStream::connect(path).expect("connect");
        w.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let r = BufReader::new(w.try_clone().unwrap());
        Raw {
            w,
            r,
            events: Vec::new(),
        }
    }

    fn line(&mut self) -> serde_json::Value {
        let mut l = String::new();
        self.r.read_line(&mut l).expect("read a QMP message");
        serde_json::from_str(&l).unwrap_or_else(|e| panic!("bad JSON from kite {l:?}: {e}"))
    }

    /// Send `text`; the next message that is not an event.
    fn cmd(&mut self, text: &str) -> serde_json::Value {
        self.w.write_all(text.as_bytes()).unwrap();
        self.w.write_all(b"\n").unwrap();
        loop {
            let m = self.line();
            if m.get("event").is_none() {
                return m;
            }
            self.events.push(m);
        }
    }

    fn negotiate(path: &Path) -> Raw {
        let mut c = Raw::connect(path);
        let g = c.line();
        assert!(g["QMP"]["version"]["qemu"]["major"].is_u64(), "{g}");
        assert_eq!(g["QMP"]["capabilities"], serde_json::json!([]));
        assert_eq!(
            c.cmd(r#"{"execute":"qmp_capabilities"}"#),
            serde_json::json!({"return": {}})
        );
        c
    }

    fn event(&mut self, name: &str) -> serde_json::Value {
        if let Some(i) = self.events.iter().position(|e| e["event"] == name) {
            return self.events.remove(i);
        }
        loop {
            let m = self.line();
            if m["event"] == name {
                return m;
            }
        }
    }
}

fn status(c: &mut Raw) -> String {
    c.cmd(r#"{"execute":"query-status"}"#)["return"]["status"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn pause_stops_the_guest_and_cont_resumes_it_on_emu() {
    pause_and_resume("emu");
}

#[test]
fn pause_stops_the_guest_and_cont_resumes_it_on_kvm() {
    if common::kvm_available("pause on kvm") {
        pause_and_resume("kvm");
    }
}

fn pause_and_resume(engine: &str) {
    let mut vm = Vm::counter(&format!("pause-{engine}"), engine);
    let mut c = Raw::negotiate(&vm.sock);
    vm.wait_count(3);
    assert_eq!(status(&mut c), "running");
    assert_eq!(
        c.cmd(r#"{"execute":"stop","id":1}"#)["return"],
        serde_json::json!({})
    );
    let ev = c.event("STOP");
    assert!(ev["timestamp"]["seconds"].as_u64().unwrap() > 0);
    assert_eq!(status(&mut c), "paused");
    let at_stop = vm.count().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(vm.count(), Some(at_stop), "the guest ran while paused");
    assert_eq!(
        c.cmd(r#"{"execute":"cont"}"#),
        serde_json::json!({"return": {}})
    );
    c.event("RESUME");
    vm.wait_count(at_stop + 3);
    assert_eq!(status(&mut c), "running");
    // The vCPU thread is a real host thread with a name.
    let cpus = c.cmd(r#"{"execute":"query-cpus-fast"}"#);
    let tid = cpus["return"][0]["thread-id"].as_i64().unwrap();
    let comm = std::fs::read_to_string(format!("/proc/{}/task/{tid}/comm", vm.child.id())).unwrap();
    assert_eq!(comm.trim(), "kite-vcpu0");
    let kvm = c.cmd(r#"{"execute":"query-kvm"}"#);
    assert_eq!(kvm["return"]["enabled"], engine == "kvm");
    // Quit: the reply, then SHUTDOWN, then exit 0.
    assert_eq!(
        c.cmd(r#"{"execute":"quit","id":"q"}"#),
        serde_json::json!({"return": {}, "id": "q"})
    );
    let ev = c.event("SHUTDOWN");
    assert_eq!(
        ev["data"],
        serde_json::json!({"guest": false, "reason": "host-qmp-quit"})
    );
    assert_eq!(vm.wait_exit(), Some(0), "{}", vm.stderr());
}

/// Run tests/qmp/drive.py against `vm`; its output on failure.
fn drive(vm: &Vm, scenario: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/qmp/drive.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(&vm.sock)
        .arg(&vm.serial)
        .arg(scenario)
        .output()
        .expect("python3 (with `pip install qemu.qmp`) must be installed");
    assert!(
        out.status.success(),
        "drive.py {scenario}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn qemu_qmp_library_drives_stop_cont_reset_and_quit() {
    let mut vm = Vm::counter("python", "emu");
    drive(&vm, "counter");
    assert_eq!(vm.wait_exit(), Some(0), "{}", vm.stderr());
}

/// Host CPU time (user + system, in clock ticks) of process `pid`.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the ")" that ends the command name: state is field 3,
    // utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn a_paused_guest_burns_no_host_cpu() {
    // The counter guest polls the PM timer: running, it keeps a host CPU busy.
    let vm = Vm::counter("idle", "emu");
    let mut c = Raw::negotiate(&vm.sock);
    vm.wait_count(2);
    let pid = vm.child.id();
    let t0 = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(1));
    let running = cpu_ticks(pid) - t0;
    c.cmd(r#"{"execute":"stop"}"#);
    let t1 = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(1));
    let paused = cpu_ticks(pid) - t1;
    // Clock ticks are 1/100 s. Running, the guest polls (as much host CPU
    // as a loaded test machine gives it); paused, its vCPU thread sleeps.
    assert!(
        paused <= 3 && running > paused,
        "CPU ticks in 1 s: {running} running, {paused} paused"
    );
    c.cmd(r#"{"execute":"cont"}"#);
    let n = vm.count().unwrap();
    vm.wait_count(n + 2);
}

#[test]
fn socat_sends_commands_and_gets_replies_and_events() {
    let mut vm = Vm::counter("socat", "emu");
    vm.wait_count(1);
    let mut socat = Command::new("socat")
        .arg("-")
        .arg(format!("UNIX-CONNECT:{}", vm.sock.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("socat must be installed");
    let mut input = socat.stdin.take().unwrap();
    let mut lines = BufReader::new(socat.stdout.take().unwrap()).lines();
    let mut next = || -> serde_json::Value {
        serde_json::from_str(&lines.next().expect("a line").expect("read")).expect("JSON")
    };
    assert!(next()["QMP"].is_object());
    for cmd in [
        r#"{"execute":"qmp_capabilities","id":1}"#,
        r#"{"execute":"stop","id":2}"#,
        r#"{"execute":"query-status","id":3}"#,
        r#"{"execute":"cont","id":4}"#,
        r#"{"execute":"system_reset","id":5}"#,
        r#"{"execute":"quit","id":6}"#,
    ] {
        writeln!(input, "{cmd}").unwrap();
    }
    let mut seen = Vec::new();
    loop {
        let m = next();
        let done = m["event"] == "SHUTDOWN";
        seen.push(m);
        if done {
            break;
        }
    }
    let pick = |id: i64| {
        seen.iter()
            .find(|m| m["id"] == id)
            .unwrap_or_else(|| panic!("no reply {id} in {seen:?}"))
    };
    for id in [1, 2, 4, 5, 6] {
        assert_eq!(pick(id)["return"], serde_json::json!({}), "{seen:?}");
    }
    assert_eq!(pick(3)["return"]["status"], "paused");
    let events: Vec<&str> = seen.iter().filter_map(|m| m["event"].as_str()).collect();
    assert_eq!(events, ["STOP", "RESUME", "RESET", "SHUTDOWN"], "{seen:?}");
    drop(input);
    let _ = socat.wait();
    assert_eq!(vm.wait_exit(), Some(0));
}

#[test]
fn hostile_clients_get_errors_and_the_guest_runs_on() {
    let mut vm = Vm::counter("hostile", "emu");
    let mut c = Raw::negotiate(&vm.sock);
    vm.wait_count(1);
    // Malformed JSON, a non-object, an unknown command, wrong and missing
    // arguments: each one error, the connection stays.
    for (text, class) in [
        ("{\"execute\": \"stop\" \"x\"}", "GenericError"),
        ("[\"stop\"]", "GenericError"),
        ("{\"execute\":\"reboot-the-host\"}", "CommandNotFound"),
        (
            "{\"execute\":\"stop\",\"arguments\":{\"now\":true}}",
            "GenericError",
        ),
        ("{\"execute\":\"human-monitor-command\"}", "GenericError"),
        (
            "{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":[]}}",
            "GenericError",
        ),
    ] {
        let r = c.cmd(text);
        assert_eq!(r["error"]["class"], class, "{text}: {r}");
        assert!(r["error"]["desc"].as_str().is_some_and(|d| !d.is_empty()));
    }
    assert_eq!(status(&mut c), "running");

    // A client that sends a huge message is dropped; others are not.
    let mut big = Raw::negotiate(&vm.sock);
    let mut msg = b"{\"execute\":\"".to_vec();
    msg.resize(2 << 20, b'a');
    let _ = big.w.write_all(&msg);
    let r = big.line();
    assert_eq!(r["error"]["class"], "GenericError");
    let mut rest = String::new();
    assert_eq!(
        big.r.read_line(&mut rest).unwrap_or(0),
        0,
        "still open: {rest}"
    );

    // A client that disconnects right after `stop`: the VM stays paused.
    let mut gone = Raw::negotiate(&vm.sock);
    gone.w.write_all(b"{\"execute\":\"stop\"}\n").unwrap();
    drop(gone);
    c.event("STOP");
    assert_eq!(status(&mut c), "paused");
    c.cmd(r#"{"execute":"cont"}"#);

    // Many clients at once, one never reading, one never negotiating:
    // every other one is answered.
    let _silent: Vec<UnixStream> = (0..8)
        .map(|_| UnixStream::connect(&vm.sock).unwrap())
        .collect();
    let mut many: Vec<Raw> = (0..16).map(|_| Raw::negotiate(&vm.sock)).collect();
    for (i, m) in many.iter_mut().enumerate() {
        let r = m.cmd(&format!("{{\"execute\":\"query-status\",\"id\":{i}}}"));
        assert_eq!(r["id"], i, "{r}");
        assert_eq!(r["return"]["status"], "running");
    }
    let n = vm.count().unwrap();
    vm.wait_count(n + 3);
    c.cmd(r#"{"execute":"quit"}"#);
    // Every negotiated client hears the SHUTDOWN.
    for m in many.iter_mut() {
        assert_eq!(m.event("SHUTDOWN")["data"]["reason"], "host-qmp-quit");
    }
    assert_eq!(vm.wait_exit(), Some(0), "{}", vm.stderr());
}

#[test]
fn wait_on_holds_the_guest_until_a_client_connects() {
    let k = temp_file("wait-counter.elf", &tk::counter());
    let sock = temp_path("wait.qmp");
    let serial = temp_path("wait.serial");
    let _ = std::fs::remove_file(&serial);
    let mut child = Command::new(env!("CARGO_BIN_EXE_kite"))
        .args(["run", "--engine", "emu", "--kernel", &k])
        .arg("--serial")
        .arg(format!("file={}", serial.display()))
        .arg("--qmp")
        .arg(format!("unix:{},server,wait=on", sock.display()))
        .stdin(Stdio::null())
        .spawn()
        .expect("start kite");
    let vm_start = Instant::now();
    while !sock.exists() && vm_start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !serial.exists() || std::fs::read_to_string(&serial).unwrap().is_empty(),
        "the guest ran before a client connected"
    );
    let mut c = Raw::negotiate(&sock);
    let start = Instant::now();
    while !std::fs::read_to_string(&serial)
        .unwrap_or_default()
        .contains(tk::COUNTER_PREFIX)
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the guest never ran"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    c.cmd(r#"{"execute":"quit"}"#);
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn bad_qmp_addresses_are_one_line_and_status_2() {
    let r = common::kite(&["run", "--qmp", "udp:1.2.3.4:5"], b"");
    assert_eq!(r.status, Some(2));
    assert!(r.single_stderr_line().contains("unix:PATH"), "{}", r.stderr);
    let r = common::kite(&["run", "--qmp", "unix:/nonexistent/dir/q.sock"], b"");
    assert_eq!(r.status, Some(2));
    assert!(
        r.single_stderr_line().contains("/nonexistent/dir/q.sock"),
        "{}",
        r.stderr
    );
}

/// The amd64 Debian guest from scripts/guests.sh, with the power-button
/// listener in its initramfs (the `.layout-button` stamp).
fn linux_guest() -> PathBuf {
    let cache = std::env::var("KITE_GUEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                .join(".cache/kite-guests")
        });
    let dir = cache.join("amd64");
    assert!(
        dir.join(".layout-button").exists(),
        "no amd64 guest with the power-button listener in {}: run scripts/guests.sh \
         (KITE_GUEST_CACHE={})",
        dir.display(),
        cache.display()
    );
    dir
}

#[test]
fn system_powerdown_shuts_a_linux_guest_down_cleanly() {
    let dir = linux_guest();
    // The guest says when its button driver is up, then would idle a
    // minute: only the power button ends it early.
    let cmd = "grep -q 'Power Button' /proc/bus/input/devices && echo POWER-READY; sleep 60";
    let cmdline = format!("console=ttyS0 panic=-1 kite_cmd=\"{cmd}\"");
    let (kernel, initrd) = (
        dir.join("vmlinuz").display().to_string(),
        dir.join("initrd.gz").display().to_string(),
    );
    let mut vm = Vm::start(
        "powerdown",
        &[
            "--engine",
            "emu",
            "--memory",
            "256M",
            "--kernel",
            &kernel,
            "--initrd",
            &initrd,
            "--cmdline",
            &cmdline,
        ],
        &[],
    );
    let start = Instant::now();
    drive(&vm, "powerdown");
    assert_eq!(vm.wait_exit(), Some(0), "{}", vm.stderr());
    let out = std::fs::read_to_string(&vm.serial).unwrap();
    assert!(
        out.contains("kite-guest: power button pressed, powering off")
            && out.contains("reboot: Power down"),
        "{out}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(55),
        "the guest sat out its sleep instead"
    );
}
