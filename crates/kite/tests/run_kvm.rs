//! Whole guests on the kvm engine: the built kite binary boots the test
//! kernels and its exit status and console output are what a user sees.
//! Skipped (with the reason printed) where /dev/kvm is absent.

mod common;

use common::{kite, kvm_available, temp_file, temp_path};
use kite_testkernels as tk;

#[test]
fn builtin_guest_greets_and_exits_33() {
    if !kvm_available("builtin_guest_greets_and_exits_33") {
        return;
    }
    let r = kite(&["run", "--engine", "kvm", "--kernel", "builtin"], b"");
    assert_eq!(
        r.status,
        Some(tk::debug_exit_status(tk::HELLO_EXIT_VALUE)),
        "stderr: {}",
        r.stderr
    );
    assert_eq!(r.status, Some(33));
    assert_eq!(r.stdout, format!("{}\n", tk::HELLO_GREETING));
    assert!(r.stderr.is_empty(), "stderr: {}", r.stderr);
}

#[test]
fn long_mode_compute_kernel_prints_checksum_and_exits_through_f4() {
    if !kvm_available("long_mode_compute_kernel") {
        return;
    }
    let k = temp_file("compute.elf", &tk::compute(0x2a));
    let r = kite(&["run", "--engine", "kvm", "--kernel", &k], b"");
    assert_eq!(r.status, Some((0x2a << 1) | 1), "stderr: {}", r.stderr);
    assert_eq!(
        r.stdout,
        format!("checksum={:016x}\n", tk::compute_checksum())
    );
}

#[test]
fn exit_values_map_to_statuses() {
    if !kvm_available("exit_values_map_to_statuses") {
        return;
    }
    for v in [0u8, 1, 0x45, 0x7f] {
        let k = temp_file(&format!("exit{v}.elf"), &tk::exit_with(v));
        let r = kite(
            &["run", "--engine", "kvm", "--serial", "none", "--kernel", &k],
            b"",
        );
        assert_eq!(
            r.status,
            Some((i32::from(v) << 1) | 1),
            "value {v}: {}",
            r.stderr
        );
    }
}

#[test]
fn protected_mode_kernel_sees_multiboot_magic() {
    if !kvm_available("protected_mode_kernel") {
        return;
    }
    let k = temp_file("hello32.elf", &tk::hello32(0x11));
    let r = kite(&["run", "--engine", "kvm", "--kernel", &k], b"");
    assert_eq!(r.stdout, format!("{}\n", tk::HELLO32_GREETING));
    assert_eq!(r.status, Some(0x23));
}

#[test]
fn cmdline_reaches_the_guest() {
    if !kvm_available("cmdline_reaches_the_guest") {
        return;
    }
    let k = temp_file("cmdline.elf", &tk::print_cmdline(3));
    let initrd = temp_file("initrd.img", &[7; 10_000]);
    let r = kite(
        &[
            "run",
            "--engine",
            "kvm",
            "--kernel",
            &k,
            "--initrd",
            &initrd,
            "--cmdline",
            "console=ttyS0 kite=yes",
        ],
        b"",
    );
    assert_eq!(r.stdout, "mbi cmdline=console=ttyS0 kite=yes\n");
    assert_eq!(r.status, Some(7));
}

#[test]
fn serial_file_receives_the_output() {
    if !kvm_available("serial_file_receives_the_output") {
        return;
    }
    let out = temp_path("serial.txt");
    let arg = format!("file={}", out.display());
    let r = kite(
        &[
            "run", "--engine", "kvm", "--kernel", "builtin", "--serial", &arg,
        ],
        b"",
    );
    assert_eq!(r.status, Some(33));
    assert!(r.stdout.is_empty(), "stdout: {}", r.stdout);
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        format!("{}\n", tk::HELLO_GREETING)
    );

    let r = kite(
        &[
            "run", "--engine", "kvm", "--kernel", "builtin", "--serial", "none",
        ],
        b"",
    );
    assert_eq!(r.status, Some(33));
    assert!(r.stdout.is_empty());
}

#[test]
fn several_vcpus_and_memory_above_4g() {
    if !kvm_available("several_vcpus_and_memory_above_4g") {
        return;
    }
    let r = kite(
        &[
            "run", "--engine", "kvm", "--kernel", "builtin", "--cpus", "4", "--memory", "5G",
        ],
        b"",
    );
    assert_eq!(r.status, Some(33), "stderr: {}", r.stderr);
    assert_eq!(r.stdout, format!("{}\n", tk::HELLO_GREETING));
}

#[test]
fn triple_fault_under_no_reboot_names_the_state() {
    if !kvm_available("triple_fault_under_no_reboot") {
        return;
    }
    let k = temp_file("tf.elf", &tk::triple_fault());
    let r = kite(
        &["run", "--engine", "kvm", "--no-reboot", "--kernel", &k],
        b"",
    );
    assert_eq!(r.status, Some(1));
    assert_eq!(r.stdout, "faulting\n");
    let line = r.single_stderr_line();
    for part in [
        "triple fault",
        "rip=",
        "cr0=0x11",
        "cr3=",
        "cr4=",
        "efer=",
        "cs=0x8",
    ] {
        assert!(line.contains(part), "{part} missing: {line}");
    }
}

#[test]
fn keyboard_controller_reset_reboots_or_ends() {
    if !kvm_available("keyboard_controller_reset") {
        return;
    }
    let k = temp_file("reset.elf", &tk::i8042_reset());
    let r = kite(
        &["run", "--engine", "kvm", "--no-reboot", "--kernel", &k],
        b"",
    );
    assert_eq!(r.status, Some(0), "stderr: {}", r.stderr);
    assert_eq!(r.stdout, "resetting\n");

    // Without --no-reboot the guest boots again, and again: it prints its
    // line once per boot until we stop it with Ctrl-A x.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kite"))
        .args(["run", "--engine", "kvm", "--kernel", &k])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    use std::io::Read;
    while seen.windows(10).filter(|w| w == b"resetting\n").count() < 3 {
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "kite ended before rebooting three times");
        seen.extend_from_slice(&buf[..n]);
    }
    use std::io::Write;
    child.stdin.as_mut().unwrap().write_all(b"\x01x").unwrap();
    // Keep draining the console so kite never blocks on a full pipe.
    std::thread::spawn(move || while matches!(stdout.read(&mut buf), Ok(n) if n > 0) {});
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > std::time::Duration::from_secs(30) {
            let _ = child.kill();
            panic!("Ctrl-A x did not stop a rebooting guest within 30 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(0));
}

#[test]
fn ctrl_a_x_quits_a_halted_guest() {
    if !kvm_available("ctrl_a_x_quits_a_halted_guest") {
        return;
    }
    let k = temp_file("halt.elf", &tk::halt());
    let r = kite(&["run", "--engine", "kvm", "--kernel", &k], b"\x01x");
    assert_eq!(r.status, Some(0), "stderr: {}", r.stderr);
    assert!(r.stderr.is_empty());
}

#[test]
fn stdin_reaches_the_guest_console() {
    if !kvm_available("stdin_reaches_the_guest_console") {
        return;
    }
    let k = temp_file("echo.elf", &tk::echo(5));
    let r = kite(
        &["run", "--engine", "kvm", "--kernel", &k],
        b"typed to COM1.ignored",
    );
    assert_eq!(r.status, Some(11), "stderr: {}", r.stderr);
    assert_eq!(r.stdout, "typed to COM1.");
}
