//! `--gdb` end to end: kite runs a probe kernel stopped (`wait=on`), Debian's
//! gdb (in batch mode, a client no one here wrote) attaches over TCP, loads
//! the probe's ELF for its symbols, breaks, steps, reads registers and
//! memory, watches a variable, and continues to the guest's exit, whose
//! status gdb and kite must agree on. On each engine.
//!
//! Needs `gdb` (apt-get install gdb).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{kvm_available, temp_file, temp_path};
use kite_testkernels as tk;

/// How long one gdb session (and the guest under it) may take.
const TIMEOUT: Duration = Duration::from_secs(60);

/// A kite process waiting for gdb.
struct Debuggee {
    child: Child,
    addr: String,
    serial: std::path::PathBuf,
    stderr: mpsc::Receiver<String>,
}

impl Debuggee {
    fn start(name: &str, engine: &str, kernel: &str, gdb_options: &str) -> Debuggee {
        Debuggee::start_with(name, engine, kernel, gdb_options, &["--no-reboot"])
    }

    fn start_with(
        name: &str,
        engine: &str,
        kernel: &str,
        gdb_options: &str,
        extra: &[&str],
    ) -> Debuggee {
        let gdb = format!("tcp:127.0.0.1:0,wait=on{gdb_options}");
        let serial_path = temp_path(&format!("{name}.serial"));
        let _ = std::fs::remove_file(&serial_path);
        let serial = format!("file={}", serial_path.display());
        let mut child = Command::new(env!("CARGO_BIN_EXE_kite"))
            .args([
                "run", "--engine", engine, "--kernel", kernel, "--serial", &serial, "--gdb", &gdb,
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start kite");
        let (tx, stderr) = mpsc::channel();
        let pipe = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        // kite says where it listens (port 0: the kernel picked one).
        let line = stderr
            .recv_timeout(TIMEOUT)
            .expect("kite's 'waiting for gdb' line");
        let addr = line
            .strip_prefix("kite: waiting for gdb on ")
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected first stderr line: {line}"))
            .to_string();
        Debuggee {
            child,
            addr,
            serial: serial_path,
            stderr,
        }
    }

    /// Run gdb in batch mode against this kite: `setup`, `file` (the ELF for
    /// its symbols, if any), then `target remote`, then `commands`.
    fn gdb(&self, setup: &[&str], file: Option<&str>, commands: &[&str]) -> String {
        self.gdb_interrupted(setup, file, commands, false)
    }

    /// `gdb`, pressing Ctrl-C (SIGINT to gdb, which gdb sends on to the
    /// target) once, if `interrupt`, as soon as the guest has printed on its
    /// serial port (so gdb has let it run and waits in `continue`).
    fn gdb_interrupted(
        &self,
        setup: &[&str],
        file: Option<&str>,
        commands: &[&str],
        interrupt: bool,
    ) -> String {
        let mut args: Vec<String> = ["-batch", "-nx", "-ex", "set pagination off"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for c in setup {
            args.extend(["-ex".into(), c.to_string()]);
        }
        if let Some(f) = file {
            args.extend(["-ex".into(), format!("file {f}")]);
        }
        args.extend(["-ex".into(), format!("target remote {}", self.addr)]);
        for c in commands {
            args.extend(["-ex".into(), c.to_string()]);
        }
        let mut gdb = Command::new("gdb")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run gdb (apt-get install gdb)");
        let start = Instant::now();
        let mut ctrl_c = interrupt;
        while gdb.try_wait().expect("wait for gdb").is_none() {
            let printed = std::fs::metadata(&self.serial).is_ok_and(|m| m.len() > 0);
            if ctrl_c && printed {
                ctrl_c = false;
                let pid = gdb.id().to_string();
                let _ = Command::new("kill").args(["-INT", &pid]).status();
            }
            if start.elapsed() > TIMEOUT {
                let _ = gdb.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let out = gdb.wait_with_output().expect("gdb output");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("--- gdb ---\n{text}--- end gdb ---");
        text
    }

    /// Kite's exit status and the rest of its stderr.
    fn finish(mut self) -> (Option<i32>, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait for kite") {
                break s.code();
            }
            if start.elapsed() > TIMEOUT {
                let _ = self.child.kill();
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let stderr: Vec<String> = self.stderr.try_iter().collect();
        (status, stderr.join("\n"))
    }
}

/// Whether Debian's gdb is here; a missing gdb skips (with a line) unless
/// KITE_REQUIRE_CLIENTS=1, where it fails.
fn gdb_installed() -> bool {
    let ok = Command::new("gdb")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("KITE_REQUIRE_CLIENTS").is_err(),
            "gdb is missing and KITE_REQUIRE_CLIENTS is set"
        );
        eprintln!("SKIPPED: gdb is not installed (apt-get install -y gdb)");
    }
    ok
}

/// `line` appears in gdb's output.
fn expect_line(out: &str, line: &str) {
    assert!(
        out.lines().any(|l| l.trim() == line),
        "gdb did not print {line:?}; it printed:\n{out}"
    );
}

/// The probe session: break at a symbol, step, registers, memory,
/// optionally a watchpoint, then continue to the exit.
fn probe32_session(engine: &str, watch: bool) {
    if !gdb_installed() {
        return;
    }
    const EXIT_VALUE: u8 = 0x21;
    let probe = tk::gdb_probe32(EXIT_VALUE);
    let elf = temp_file(&format!("gdb-probe32-{engine}.elf"), &probe.elf);
    let vm = Debuggee::start(&format!("gdb-probe32-{engine}"), engine, &elf, "");
    let brk = probe.addr("probe_break").expect("probe_break");
    let next = probe.addr("probe_next").expect("probe_next");
    let after = probe.addr("probe_after_store").expect("probe_after_store");
    let mut commands = vec![
        "break probe_break".to_string(),
        "continue".into(),
        r#"printf "pc=%#x eax=%#x\n", $pc, $eax"#.into(),
        r#"printf "value=%#x\n", *(unsigned int *)&probe_value"#.into(),
        "stepi".into(),
        r#"printf "stepped pc=%#x ebx=%#x\n", $pc, $ebx"#.into(),
        "info threads".into(),
        // Writes: memory by virtual address, and a register the guest then
        // uses (the next instruction adds 1 to EAX).
        "set var *(unsigned int *)&probe_value = 0x600df00d".into(),
        r#"printf "written=%#x\n", *(unsigned int *)&probe_value"#.into(),
        "set var $eax = 0x1000".into(),
        "stepi".into(),
        r#"printf "eax after add=%#x\n", $eax"#.into(),
    ];
    if watch {
        commands.extend([
            "watch *(unsigned int *)&probe_counter".into(),
            "continue".into(),
            r#"printf "watch pc=%#x counter=%u\n", $pc, *(unsigned int *)&probe_counter"#.into(),
            "delete".into(),
        ]);
    }
    commands.extend([
        "hbreak probe_exit".into(),
        "continue".into(),
        r#"printf "hbreak pc=%#x\n", $pc"#.into(),
        "delete".into(),
        "continue".into(),
    ]);
    let refs: Vec<&str> = commands.iter().map(String::as_str).collect();
    let out = vm.gdb(&[], Some(&elf), &refs);
    let (status, stderr) = vm.finish();

    expect_line(&out, &format!("pc={brk:#x} eax={:#x}", tk::PROBE_EAX));
    expect_line(&out, &format!("value={:#x}", tk::PROBE_VALUE));
    expect_line(
        &out,
        &format!("stepped pc={next:#x} ebx={:#x}", tk::PROBE_EBX),
    );
    expect_line(&out, "written=0x600df00d");
    expect_line(&out, "eax after add=0x1001");
    if watch {
        assert!(
            out.contains("Hardware watchpoint 2: *(unsigned int *)&probe_counter"),
            "{out}"
        );
        assert!(out.contains("New value = 7"), "{out}");
        expect_line(
            &out,
            &format!("watch pc={after:#x} counter={}", tk::PROBE_COUNTER),
        );
    }
    let exit = probe.addr("probe_exit").expect("probe_exit");
    expect_line(&out, &format!("hbreak pc={exit:#x}"));
    let want = tk::debug_exit_status(EXIT_VALUE);
    assert_eq!(status, Some(want), "kite's status; stderr: {stderr}");
    // gdb prints exit codes in octal, with a leading 0.
    assert!(
        out.contains(&format!("exited with code 0{want:o}]")),
        "gdb did not see the exit with status {want}:\n{out}"
    );
}

#[test]
fn gdb_debugs_a_32bit_probe_on_emu() {
    probe32_session("emu", true);
}

#[test]
fn gdb_debugs_a_32bit_probe_on_kvm() {
    if kvm_available("gdb on kvm") {
        // This host's KVM ignores data breakpoints (see the conformance
        // suite's known failures): no watchpoint there.
        probe32_session("kvm", false);
    }
}

fn probe64_session(engine: &str) {
    if !gdb_installed() {
        return;
    }
    const EXIT_VALUE: u8 = 0x12;
    let probe = tk::gdb_probe64(EXIT_VALUE);
    let elf = temp_file(&format!("gdb-probe64-{engine}.elf"), &probe.elf);
    // The probe starts in 32-bit mode (Multiboot) and is an ELF32 file:
    // both sides are told to use the x86-64 layout from the start.
    let vm = Debuggee::start(
        &format!("gdb-probe64-{engine}"),
        engine,
        &elf,
        ",arch=x86-64",
    );
    let brk = probe.addr("probe64_break").expect("probe64_break");
    let out = vm.gdb(
        &["set architecture i386:x86-64"],
        Some(&elf),
        &[
            "break probe64_break",
            "continue",
            r#"printf "rip=%#lx rsp=%#lx rax=%#lx\n", $rip, $rsp, $rax"#,
            r#"printf "cr3=%#lx efer=%#lx fs_base=%#lx\n", $cr3, $efer, $fs_base"#,
            "info registers cr0",
            "monitor regs",
            "continue",
        ],
    );
    let (status, stderr) = vm.finish();
    expect_line(
        &out,
        &format!(
            "rip={brk:#x} rsp={:#x} rax={:#x}",
            tk::PROBE_STACK_TOP,
            tk::PROBE_RAX
        ),
    );
    // The control registers as gdb registers: the probe's page tables, and
    // long mode on (EFER.LME|LMA).
    expect_line(
        &out,
        &format!(
            "cr3={:#x} efer=0x500 fs_base=0",
            u64::from(tk::LOAD_ADDR) + 0x1000
        ),
    );
    assert!(out.contains("cr0 "), "{out}");
    // The monitor shows long mode: EFER.LMA and a 64-bit code segment.
    assert!(out.contains("efer=0x500"), "{out}");
    assert!(out.contains("cs  selector=0x0008"), "{out}");
    let want = tk::debug_exit_status(EXIT_VALUE);
    assert_eq!(status, Some(want), "kite's status; stderr: {stderr}");
}

#[test]
fn gdb_reads_rip_and_rsp_of_a_long_mode_probe_on_emu() {
    probe64_session("emu");
}

#[test]
fn gdb_reads_rip_and_rsp_of_a_long_mode_probe_on_kvm() {
    if kvm_available("gdb long mode on kvm") {
        probe64_session("kvm");
    }
}

/// A triple fault with gdb attached stops for gdb (SIGSEGV) instead of
/// resetting at once; continuing lets the machine go on (here: end, under
/// --no-reboot, with the triple fault's status 1).
fn triple_fault_session(engine: &str) {
    if !gdb_installed() {
        return;
    }
    let kernel = temp_file(&format!("gdb-triple-{engine}.elf"), &tk::triple_fault());
    let vm = Debuggee::start(&format!("gdb-triple-{engine}"), engine, &kernel, "");
    let out = vm.gdb(
        &[],
        None,
        &["continue", r#"printf "stopped pc=%#x\n", $pc"#, "continue"],
    );
    let (status, stderr) = vm.finish();
    assert!(
        out.contains("SIGSEGV"),
        "gdb did not see the triple fault:\n{out}"
    );
    assert!(out.contains("stopped pc=0x"), "{out}");
    assert_eq!(status, Some(1), "kite's status; stderr: {stderr}");
    assert!(stderr.contains("triple fault"), "{stderr}");
    assert!(out.contains("exited with code 01]"), "{out}");
}

#[test]
fn a_triple_fault_stops_for_gdb_on_emu() {
    triple_fault_session("emu");
}

/// Without --no-reboot a triple fault resets the machine once gdb lets it
/// go on; the next boot's vCPUs are gdb's threads again (and fault again).
#[test]
fn gdb_follows_the_machine_through_a_reset() {
    if !gdb_installed() {
        return;
    }
    let kernel = temp_file("gdb-reset.elf", &tk::triple_fault());
    let vm = Debuggee::start_with("gdb-reset", "emu", &kernel, "", &[]);
    let out = vm.gdb(
        &[],
        None,
        &[
            "continue",
            "continue",
            r#"printf "second stop pc=%#x\n", $pc"#,
            "kill",
        ],
    );
    let (status, stderr) = vm.finish();
    assert_eq!(
        out.matches("SIGSEGV").count(),
        2,
        "gdb did not see a triple fault in each boot:\n{out}"
    );
    assert!(out.contains("second stop pc=0x"), "{out}");
    assert_eq!(
        status,
        Some(0),
        "kite's status after kill; stderr: {stderr}"
    );
}

#[test]
fn a_triple_fault_stops_for_gdb_on_kvm() {
    if kvm_available("gdb triple fault on kvm") {
        triple_fault_session("kvm");
    }
}

#[test]
fn a_bad_gdb_address_is_one_line_and_status_2() {
    for (spec, says) in [
        ("tcp:nowhere", "expected tcp:HOST:PORT"),
        ("tcp:127.0.0.1:1,wait=maybe", "unknown option"),
    ] {
        let run = common::kite(&["run", "--kernel", "builtin", "--gdb", spec], b"");
        assert_eq!(run.status, Some(2), "{spec}: {}", run.stderr);
        assert!(
            run.single_stderr_line().contains(says),
            "{spec}: {}",
            run.stderr
        );
    }
    // An address already in use.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let spec = format!("tcp:{}", taken.local_addr().expect("addr"));
    let run = common::kite(&["run", "--kernel", "builtin", "--gdb", &spec], b"");
    assert_eq!(run.status, Some(2), "{}", run.stderr);
    assert!(
        run.single_stderr_line().contains("cannot listen"),
        "{}",
        run.stderr
    );
}

/// Ctrl-C (gdb's `interrupt`) stops a running guest on every vCPU, each a
/// gdb thread; `kill` ends the machine.
fn interrupt_session(engine: &str) {
    if !gdb_installed() {
        return;
    }
    let kernel = temp_file(&format!("gdb-counter-{engine}.elf"), &tk::counter());
    let vm = Debuggee::start_with(
        &format!("gdb-counter-{engine}"),
        engine,
        &kernel,
        "",
        &["--cpus", "2", "--no-reboot"],
    );
    let out = vm.gdb_interrupted(
        &[],
        None,
        &[
            "continue",
            "info threads",
            "thread 1",
            r#"printf "thread 1 pc=%#x\n", $pc"#,
            "thread 2",
            r#"printf "thread 2 pc=%#x\n", $pc"#,
            "kill",
        ],
        true,
    );
    let (status, stderr) = vm.finish();
    assert!(
        out.contains("SIGINT"),
        "gdb did not see the interrupt:\n{out}"
    );
    assert!(out.contains("Thread 1.2"), "no second vCPU thread:\n{out}");
    // vCPU 0 runs the counter loop (in the kernel's segment); vCPU 1 still
    // waits for its start-up IPI at the reset vector.
    let pc0 = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("thread 1 pc=0x"))
        .and_then(|v| u64::from_str_radix(v, 16).ok())
        .unwrap_or_else(|| panic!("no pc for thread 1:\n{out}"));
    let load = u64::from(tk::LOAD_ADDR);
    assert!((load..load + 0x8000).contains(&pc0), "pc {pc0:#x}:\n{out}");
    assert!(out.contains("thread 2 pc=0xfff0"), "{out}");
    assert_eq!(
        status,
        Some(0),
        "kite's status after kill; stderr: {stderr}"
    );
    assert!(stderr.contains("gdb killed the machine"), "{stderr}");
}

#[test]
fn gdb_interrupts_a_two_vcpu_guest_and_kills_it_on_emu() {
    interrupt_session("emu");
}

#[test]
fn gdb_interrupts_a_two_vcpu_guest_and_kills_it_on_kvm() {
    if kvm_available("gdb interrupt on kvm") {
        interrupt_session("kvm");
    }
}

/// A debugger that detaches leaves the guest running (it runs to its exit).
#[test]
fn detaching_gdb_leaves_the_guest_running() {
    if !gdb_installed() {
        return;
    }
    const EXIT_VALUE: u8 = 0x05;
    let probe = tk::gdb_probe32(EXIT_VALUE);
    let elf = temp_file("gdb-detach.elf", &probe.elf);
    let vm = Debuggee::start("gdb-detach", "emu", &elf, "");
    let out = vm.gdb(&[], Some(&elf), &["break probe_exit", "detach"]);
    let (status, stderr) = vm.finish();
    assert!(out.contains("detached"), "{out}");
    // The breakpoint went with the debugger: the guest ran to its exit.
    assert_eq!(
        status,
        Some(tk::debug_exit_status(EXIT_VALUE)),
        "kite's status; stderr: {stderr}"
    );
}

/// The gdb socket is hostile: garbage, malformed and oversized packets and
/// dropped connections (one connection each) leave kite standing and
/// debuggable; a real gdb attaches afterwards and kills the machine.
#[test]
fn garbage_on_the_gdb_socket_is_survived() {
    use std::io::{Read, Write};
    if !gdb_installed() {
        return;
    }
    let kernel = temp_file("gdb-garbage.elf", &tk::counter());
    let vm = Debuggee::start("gdb-garbage", "emu", &kernel, "");
    // A packet with a right checksum, so the parser sees it.
    let packet = |body: &str| {
        let sum = body.bytes().fold(0u8, |a, b| a.wrapping_add(b));
        format!("${body}#{sum:02x}")
    };
    let junk = [
        "\u{0}\u{7f} garbage".to_string(),
        "$g#00".into(), // a bad checksum
        packet(&format!("m{:x},{:x}", u64::MAX, u64::MAX)),
        packet("mfffffffffffff000,10000"),
        packet("M100000,4:zzzz"),
        packet("Z2,0,ffffffffffffffff"),
        packet("Z1,ffffffffffffffff,1"),
        packet("Z0,zz,1"),
        packet("vCont;s"),
        packet("Hgp7.7"),
        packet("qRcmd,7265677300"),
        packet("qXfer:features:read:target.xml:ffffffff,ffffffff"),
        packet(&"A".repeat(100_000)),
        packet("G00"),
    ];
    for j in &junk {
        let mut s = std::net::TcpStream::connect(&vm.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_millis(100))).ok();
        let _ = s.write_all(j.as_bytes());
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf);
    }
    let out = vm.gdb(&[], None, &["info threads", "kill"]);
    let (status, stderr) = vm.finish();
    assert!(out.contains("Thread 1.1"), "{out}");
    assert_eq!(
        status,
        Some(0),
        "kite's status after kill; stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
