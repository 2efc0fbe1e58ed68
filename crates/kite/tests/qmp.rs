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
        let _ = self.child.wait();
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
