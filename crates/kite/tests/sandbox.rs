//! The seccomp sandbox, seen from outside: every thread of a running Kite
//! is under a filter (`Seccomp: 2` in /proc/<pid>/task/*/status) on each
//! boot path (emu with Debian, virtio-blk, virtio-net, VNC and QMP; SeaBIOS
//! from IDE; kvm with a test kernel), the guests still run and end normally
//! under it, a forbidden call (the `KITE_SECCOMP_SELFTEST` hook) is reported
//! by name and ends Kite with status 6, `--seccomp log` lets it through,
//! `--seccomp off` installs nothing, a bad value is one line and status 2.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use common::{guest_dir, kite, kvm_available, pc_image, temp_file, temp_path};
use kite_testkernels as tk;

/// A Debian boot on the software engine takes 20-60 s; give it room.
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
/// The status after a forbidden call (kite_sandbox::STATUS_FORBIDDEN_SYSCALL).
const STATUS_FORBIDDEN: i32 = 6;
/// What the guests' scripts print once up: computed by the guest's shell,
/// so the echo of the command line itself does not match.
const READY: &str = "SANDBOX-42";
const READY_SCRIPT: &str = "echo SANDBOX-$((6*7)); read x; echo got-$x";

/// A running kite with stdin held open and its output in files.
struct Kite {
    child: Child,
    stdin: Option<ChildStdin>,
    out: PathBuf,
    err: PathBuf,
}

impl Kite {
    fn start(name: &str, args: &[String], env: &[(&str, &str)]) -> Kite {
        let out = temp_path(&format!("{name}.stdout"));
        let err = temp_path(&format!("{name}.stderr"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kite"));
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(std::fs::File::create(&out).expect("stdout file"))
            .stderr(std::fs::File::create(&err).expect("stderr file"))
            .env_remove("KITE_SECCOMP_SELFTEST");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start kite");
        let stdin = child.stdin.take();
        Kite {
            child,
            stdin,
            out,
            err,
        }
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Wait until `f` holds, failing the test (with kite's output) after
    /// `timeout` or if kite ends first.
    fn wait_for(&mut self, what: &str, timeout: Duration, mut f: impl FnMut(&Kite) -> bool) {
        let start = Instant::now();
        while !f(self) {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!(
                    "kite ended ({st}) before {what}; stderr {:?}\n{}",
                    self.stderr(),
                    self.stdout()
                );
            }
            assert!(
                start.elapsed() < timeout,
                "timed out waiting for {what}; stderr {:?}\n{}",
                self.stderr(),
                self.stdout()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_output(&mut self, needle: &str, timeout: Duration) {
        self.wait_for(&format!("{needle:?} on stdout"), timeout, |k| {
            k.stdout().contains(needle)
        });
    }

    fn send(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).expect("write to kite's stdin");
        stdin.flush().expect("flush kite's stdin");
    }

    /// The exit status, waiting at most `timeout` (then killing kite).
    fn status(&mut self, timeout: Duration) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                return st.code();
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Kite {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One thread's name and its seccomp lines.
#[derive(Debug)]
struct ThreadState {
    name: String,
    mode: Option<u32>,
    filters: Option<u32>,
}

fn threads(pid: u32) -> Vec<ThreadState> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for task in dir.flatten() {
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
            continue; // the thread just ended
        };
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| v.trim().to_string())
        };
        out.push(ThreadState {
            name: field("Name:").unwrap_or_default(),
            mode: field("Seccomp:").and_then(|v| v.parse().ok()),
            filters: field("Seccomp_filters:").and_then(|v| v.parse().ok()),
        });
    }
    out
}

/// Wait until kite has a thread whose name starts with each of `expected`,
/// then check that every one of its threads is in seccomp filter mode
/// (`Seccomp: 2`) with at least one filter.
fn assert_all_threads_filtered(k: &mut Kite, expected: &[&str]) -> Vec<ThreadState> {
    let pid = k.child.id();
    k.wait_for(
        &format!("threads {expected:?}"),
        Duration::from_secs(60),
        |_| {
            let names: Vec<String> = threads(pid).into_iter().map(|t| t.name).collect();
            expected
                .iter()
                .all(|e| names.iter().any(|n| n.starts_with(e)))
        },
    );
    // A thread's filter goes on as its first statement: give a thread that
    // has just started (and been named) a moment to install it; one that
    // stays unfiltered fails below.
    let filtered = |t: &ThreadState| t.mode == Some(2) && t.filters.is_some_and(|n| n >= 1);
    let start = Instant::now();
    let mut ts = threads(pid);
    while !ts.iter().all(filtered) && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
        ts = threads(pid);
    }
    for t in &ts {
        assert_eq!(t.mode, Some(2), "thread {} is not filtered: {ts:?}", t.name);
        assert!(
            t.filters.is_some_and(|n| n >= 1),
            "thread {} has too few filters: {ts:?}",
            t.name
        );
    }
    ts
}

/// A QMP client on a Unix socket: greeting read, capabilities negotiated.
struct Qmp {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Qmp {
    fn connect(k: &mut Kite, sock: &Path) -> Qmp {
        k.wait_for("the QMP socket", Duration::from_secs(60), |_| sock.exists());
        let stream = UnixStream::connect(sock).expect("connect to QMP");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut q = Qmp { stream, reader };
        let greeting = q.line();
        assert!(greeting.contains("\"QMP\""), "{greeting}");
        let r = q.execute(r#"{"execute":"qmp_capabilities"}"#);
        assert!(r.contains("\"return\""), "{r}");
        q
    }

    fn line(&mut self) -> String {
        let mut s = String::new();
        self.reader.read_line(&mut s).expect("a QMP line");
        s
    }

    /// Send `cmd`; the reply (events before it are skipped).
    fn execute(&mut self, cmd: &str) -> String {
        self.stream
            .write_all(format!("{cmd}\n").as_bytes())
            .expect("send a QMP command");
        loop {
            let l = self.line();
            assert!(!l.is_empty(), "QMP closed waiting for the reply to {cmd}");
            if l.contains("\"return\"") || l.contains("\"error\"") {
                return l;
            }
        }
    }
}

/// A VNC client through RFB 3.8 negotiation (no auth) and ServerInit, so
/// that the server runs its session threads.
fn vnc_client(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to VNC");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut version = [0u8; 12];
    s.read_exact(&mut version).expect("RFB version");
    assert_eq!(&version, b"RFB 003.008\n");
    s.write_all(b"RFB 003.008\n").expect("send version");
    let mut n = [0u8; 1];
    s.read_exact(&mut n).expect("security type count");
    let mut types = vec![0u8; n[0] as usize];
    s.read_exact(&mut types).expect("security types");
    assert!(types.contains(&1), "no None security type: {types:?}");
    s.write_all(&[1]).expect("choose None");
    let mut result = [0u8; 4];
    s.read_exact(&mut result).expect("security result");
    assert_eq!(result, [0; 4], "security failed");
    s.write_all(&[1]).expect("ClientInit (shared)");
    let mut init = [0u8; 24];
    s.read_exact(&mut init).expect("ServerInit");
    let name_len = u32::from_be_bytes([init[20], init[21], init[22], init[23]]) as usize;
    let mut name = vec![0u8; name_len.min(4096)];
    s.read_exact(&mut name).expect("desktop name");
    s
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

#[test]
fn emu_debian_with_virtio_vnc_and_qmp_runs_every_thread_filtered() {
    let guest = guest_dir("amd64");
    let disk = temp_path("sandbox-vda.img");
    std::fs::write(&disk, vec![0u8; 1 << 20]).expect("disk image");
    let sock = temp_path("sandbox.qmp");
    let _ = std::fs::remove_file(&sock);
    let shot = temp_path("sandbox-screendump.ppm");
    let _ = std::fs::remove_file(&shot);
    let display = 80 + std::process::id() % 20;
    let script = format!(
        "echo SANDBOX-DISK > /dev/vda; sync; head -c 12 /dev/vda; echo; \
         ip link set eth0 up && echo net-up; {READY_SCRIPT}"
    );
    let mut args = strings(&["run", "--engine", "emu", "--kernel"]);
    args.push(guest.join("vmlinuz").display().to_string());
    args.push("--initrd".into());
    args.push(guest.join("initrd.gz").display().to_string());
    args.extend(strings(&["--disk"]));
    args.push(disk.display().to_string());
    args.extend(strings(&[
        "--net",
        "user",
        "--serial",
        "stdio",
        "--no-reboot",
    ]));
    args.push("--display".into());
    args.push(format!("vnc=127.0.0.1:{display}"));
    args.push("--qmp".into());
    args.push(format!("unix:{},server=on,wait=off", sock.display()));
    args.push("--gdb".into());
    args.push(format!(
        "tcp:127.0.0.1:{}",
        20000 + std::process::id() % 20000
    ));
    args.push("--cmdline".into());
    args.push(format!(
        "console=ttyS0 panic=-1 quiet kite_cmd=\"{script}\""
    ));
    let mut k = Kite::start("sandbox-emu", &args, &[]);

    let mut qmp = Qmp::connect(&mut k, &sock);
    let _vnc = vnc_client(5900 + display as u16);
    k.wait_output(READY, BOOT_TIMEOUT);
    let ts = assert_all_threads_filtered(
        &mut k,
        &[
            "kite",
            "kite-vcpu0",
            "kite-irq-timer",
            "kite-rtc",
            "kite-net-user",
            "kite-stdin",
            "kite-vnc",
            "kite-vnc-client",
            "kite-vnc-read",
            "kite-qmp-accept",
            "kite-qmp-r",
            "kite-qmp-w",
            "kite-gdb",
        ],
    );
    // The vCPU runs under the main thread's filter and its own.
    let vcpu = ts.iter().find(|t| t.name == "kite-vcpu0").expect("vcpu");
    assert!(vcpu.filters.is_some_and(|n| n >= 2), "{ts:?}");

    // Monitor commands under the filter: pause and resume (vCPU kicks), a
    // screendump (a file written by the QMP thread).
    for cmd in [r#"{"execute":"stop"}"#, r#"{"execute":"cont"}"#] {
        let r = qmp.execute(cmd);
        assert!(r.contains("\"return\""), "{cmd}: {r}");
    }
    let r = qmp.execute(&format!(
        r#"{{"execute":"screendump","arguments":{{"filename":"{}"}}}}"#,
        shot.display()
    ));
    assert!(r.contains("\"return\""), "screendump: {r}");
    let ppm = std::fs::read(&shot).expect("the screendump file");
    assert!(ppm.starts_with(b"P6"), "not a PPM");
    // A snapshot: the migration thread creates, fsyncs and renames a file
    // under the QMP role's filter.
    let snap = shot.with_extension("kite");
    let r = qmp.execute(&format!(
        r#"{{"execute":"migrate","arguments":{{"uri":"file:{}"}}}}"#,
        snap.display()
    ));
    assert!(r.contains("\"return\""), "migrate: {r}");
    k.wait_for("the snapshot file", Duration::from_secs(120), |_| {
        std::fs::metadata(&snap).is_ok_and(|m| m.len() > 0)
    });

    // The console's input reaches the guest, which then powers off.
    k.send(b"go\n");
    let status = k.status(Duration::from_secs(60));
    let out = k.stdout();
    assert_eq!(status, Some(0), "stderr {:?}\n{out}", k.stderr());
    assert!(out.contains("got-go"), "{out}");
    assert!(out.contains("SANDBOX-DISK"), "virtio-blk: {out}");
    assert!(out.contains("net-up"), "virtio-net: {out}");
    assert!(!k.stderr().contains("seccomp"), "{}", k.stderr());
}

/// The emu engine's code-generating tier under the default sandbox: the
/// guest boots and ends normally, the translations are read+execute
/// anonymous memory, and no mapping is ever writable and executable.
#[test]
fn emu_code_generating_tier_runs_under_the_sandbox() {
    let guest = guest_dir("amd64");
    let mut args = strings(&["run", "--engine", "emu", "--kernel"]);
    args.push(guest.join("vmlinuz").display().to_string());
    args.push("--initrd".into());
    args.push(guest.join("initrd.gz").display().to_string());
    args.extend(strings(&["--serial", "stdio", "--no-reboot", "--cmdline"]));
    args.push(format!(
        "console=ttyS0 panic=-1 quiet kite_cmd=\"{READY_SCRIPT}\""
    ));
    let mut k = Kite::start("sandbox-emu-jit", &args, &[("KITE_EMU_TIER", "auto")]);
    k.wait_output(READY, BOOT_TIMEOUT);
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", k.child.id())).unwrap_or_default();
    let anon_exec = maps.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() == 5 && f[1] == "r-xp" && f[4] == "0"
    });
    assert!(anon_exec, "no translations mapped read+execute:\n{maps}");
    assert!(
        !maps.lines().any(|l| l
            .split_whitespace()
            .nth(1)
            .is_some_and(|p| p.starts_with("rwx"))),
        "a writable and executable mapping:\n{maps}"
    );
    k.send(b"go\n");
    let status = k.status(Duration::from_secs(60));
    let out = k.stdout();
    assert_eq!(status, Some(0), "stderr {:?}\n{out}", k.stderr());
    assert!(out.contains("got-go"), "{out}");
    assert!(!k.stderr().contains("seccomp"), "{}", k.stderr());
}

#[test]
fn firmware_boot_from_ide_runs_every_thread_filtered() {
    let append = format!("console=ttyS0 panic=-1 quiet kite_cmd=\"{READY_SCRIPT}\"");
    let disk = pc_image("disk", "amd64", &append);
    let args = vec![
        "run".into(),
        "--engine".into(),
        "emu".into(),
        "--disk".into(),
        format!("{},if=ide", disk.display()),
        "--serial".into(),
        "stdio".into(),
        "--no-reboot".into(),
    ];
    let mut k = Kite::start("sandbox-firmware", &args, &[]);
    k.wait_output(READY, BOOT_TIMEOUT);
    assert!(k.stdout().contains("SeaBIOS"), "{}", k.stdout());
    assert_all_threads_filtered(
        &mut k,
        &[
            "kite",
            "kite-vcpu0",
            "kite-irq-timer",
            "kite-rtc",
            "kite-stdin",
        ],
    );
    k.send(b"go\n");
    let status = k.status(Duration::from_secs(60));
    let out = k.stdout();
    assert_eq!(status, Some(0), "stderr {:?}\n{out}", k.stderr());
    assert!(out.contains("got-go"), "{out}");
}

#[test]
fn kvm_test_kernel_runs_every_thread_filtered() {
    if !kvm_available("the sandbox on kvm") {
        return;
    }
    let kernel = temp_file("sandbox-echo.elf", &tk::echo(0x15));
    let sock = temp_path("sandbox-kvm.qmp");
    let _ = std::fs::remove_file(&sock);
    let qmp_arg = format!("unix:{},server=on,wait=off", sock.display());
    let args = strings(&[
        "run", "--engine", "kvm", "--cpus", "2", "--kernel", &kernel, "--qmp", &qmp_arg,
    ]);
    let mut k = Kite::start("sandbox-kvm", &args, &[]);
    let mut qmp = Qmp::connect(&mut k, &sock);
    assert_all_threads_filtered(
        &mut k,
        &[
            "kite",
            "kite-vcpu0",
            "kite-vcpu1",
            "kite-rtc",
            "kite-stdin",
            "kite-qmp-accept",
            "kite-qmp-r",
            "kite-qmp-w",
        ],
    );
    // Pause kicks the vCPUs out of KVM_RUN with a signal from the QMP thread.
    for cmd in [r#"{"execute":"stop"}"#, r#"{"execute":"cont"}"#] {
        let r = qmp.execute(cmd);
        assert!(r.contains("\"return\""), "{cmd}: {r}");
    }
    k.send(b"hi.");
    let status = k.status(Duration::from_secs(30));
    assert_eq!(
        status,
        Some(tk::debug_exit_status(0x15)),
        "stderr {:?}\n{}",
        k.stderr(),
        k.stdout()
    );
    assert!(k.stdout().contains("hi."), "{}", k.stdout());
}

/// Run the echo kernel with `KITE_SECCOMP_SELFTEST=role` plus `extra`.
fn selftest(role: &str, engine: &str, mode: &str, extra: &[&str]) -> (Option<i32>, String) {
    let kernel = temp_file(&format!("selftest-{role}.elf"), &tk::echo(0x15));
    let mut args = strings(&[
        "run",
        "--engine",
        engine,
        "--kernel",
        &kernel,
        "--seccomp",
        mode,
    ]);
    args.extend(strings(extra));
    let mut k = Kite::start(
        &format!("selftest-{role}-{engine}-{mode}"),
        &args,
        &[("KITE_SECCOMP_SELFTEST", role)],
    );
    let status = k.status(Duration::from_secs(30));
    (status, k.stderr())
}

#[test]
fn a_forbidden_call_is_reported_by_name_and_ends_kite_with_status_6() {
    let sock = temp_path("selftest-qmp.qmp");
    let qmp = format!("unix:{},server=on,wait=off", sock.display());
    let vnc = format!("vnc=127.0.0.1:{}", 80 + (std::process::id() + 7) % 20);
    let cases: Vec<(&str, &str, Vec<&str>, &str)> = vec![
        ("main", "emu", vec![], "thread kite "),
        ("vcpu", "emu", vec![], "thread kite-vcpu0 "),
        ("timer", "emu", vec![], "thread kite-irq-timer or kite-rtc"),
        ("console", "emu", vec![], "thread kite-stdin "),
        ("net", "emu", vec!["--net", "user"], "thread kite-net-user "),
        ("vnc", "emu", vec!["--display", &vnc], "thread kite-vnc "),
        ("qmp", "emu", vec!["--qmp", &qmp], "thread kite-qmp-accept "),
    ];
    for (role, engine, extra, thread) in cases {
        let _ = std::fs::remove_file(&sock);
        let (status, err) = selftest(role, engine, "on", &extra);
        assert_eq!(status, Some(STATUS_FORBIDDEN), "{role}: stderr {err:?}");
        let line = err
            .lines()
            .find(|l| l.starts_with("kite: seccomp: "))
            .unwrap_or_else(|| panic!("{role}: no report in {err:?}"));
        // Either timer thread may start first.
        let named = if role == "timer" {
            line.contains("thread kite-irq-timer ") || line.contains("thread kite-rtc ")
        } else {
            line.contains(thread)
        };
        assert!(named, "{role}: {line}");
        assert!(
            line.ends_with("made a forbidden system call: ptrace (101)"),
            "{role}: {line}"
        );
    }
    if kvm_available("the selftest on kvm") {
        let (status, err) = selftest("vcpu", "kvm", "on", &[]);
        assert_eq!(status, Some(STATUS_FORBIDDEN), "kvm: {err:?}");
        assert!(
            err.contains(
                "kite: seccomp: thread kite-vcpu0 made a forbidden system call: ptrace (101)"
            ),
            "kvm: {err:?}"
        );
    }
}

#[test]
fn log_mode_lets_a_forbidden_call_through() {
    let kernel = temp_file("selftest-log.elf", &tk::echo(0x15));
    let args = strings(&[
        "run",
        "--engine",
        "emu",
        "--kernel",
        &kernel,
        "--seccomp",
        "log",
    ]);
    let mut k = Kite::start("selftest-log", &args, &[("KITE_SECCOMP_SELFTEST", "vcpu")]);
    // Still filtered, and still running after the vCPU's forbidden call.
    assert_all_threads_filtered(&mut k, &["kite", "kite-vcpu0", "kite-stdin"]);
    k.send(b"ok.");
    let status = k.status(Duration::from_secs(30));
    assert_eq!(
        status,
        Some(tk::debug_exit_status(0x15)),
        "stderr {:?}",
        k.stderr()
    );
    assert!(!k.stderr().contains("forbidden"), "{}", k.stderr());
}

#[test]
fn seccomp_off_installs_nothing() {
    let kernel = temp_file("seccomp-off.elf", &tk::echo(0x15));
    let args = strings(&[
        "run",
        "--engine",
        "emu",
        "--kernel",
        &kernel,
        "--seccomp",
        "off",
    ]);
    let mut k = Kite::start(
        "seccomp-off",
        &args,
        // The hook does nothing when there is no filter.
        &[("KITE_SECCOMP_SELFTEST", "vcpu")],
    );
    let pid = k.child.id();
    k.wait_for("the vCPU thread", Duration::from_secs(30), |_| {
        threads(pid).iter().any(|t| t.name == "kite-vcpu0")
    });
    let ts = threads(pid);
    assert!(ts.len() >= 3, "{ts:?}");
    for t in &ts {
        assert_eq!(t.mode, Some(0), "{ts:?}");
        assert_eq!(t.filters, Some(0), "{ts:?}");
    }
    k.send(b".");
    assert_eq!(
        k.status(Duration::from_secs(30)),
        Some(tk::debug_exit_status(0x15))
    );
}

#[test]
fn a_bad_seccomp_value_is_one_line_and_status_2() {
    let r = kite(&["run", "--kernel", "builtin", "--seccomp", "maybe"], b"");
    assert_eq!(r.status, Some(2), "{}", r.stderr);
    let line = r.single_stderr_line();
    assert!(line.contains("--seccomp"), "{line}");
    assert!(line.contains("on, off, log"), "{line}");
}
