//! Bad input: kite says what is wrong in one line on stderr and exits 2,
//! before any guest runs.

mod common;

use common::{kite, temp_file};

fn assert_bad_input(args: &[&str], mention: &str) {
    let r = kite(args, b"");
    assert_eq!(r.status, Some(2), "{args:?}: stderr {:?}", r.stderr);
    let line = r.single_stderr_line();
    assert!(
        line.contains(mention),
        "{args:?}: {line:?} should mention {mention:?}"
    );
    assert!(r.stdout.is_empty(), "{args:?}: no guest output expected");
}

#[test]
fn junk_kernel_file() {
    let junk = temp_file("junk.bin", &[0x5a; 20_000]);
    // Whatever the engine, a junk image is the user's error.
    for engine in ["kvm", "emu", "auto"] {
        assert_bad_input(
            &["run", "--engine", engine, "--kernel", &junk],
            "not a kernel image",
        );
    }
}

#[test]
fn truncated_multiboot_kernel() {
    let k = kite_testkernels::hello();
    let cut = temp_file("cut.elf", &k[..0x1100]);
    assert_bad_input(
        &["run", "--engine", "kvm", "--kernel", &cut],
        "truncated or corrupt",
    );
}

#[test]
fn missing_files() {
    assert_bad_input(
        &["run", "--kernel", "/nonexistent/vmlinuz"],
        "/nonexistent/vmlinuz",
    );
    let k = temp_file("k.elf", &kite_testkernels::hello());
    assert_bad_input(
        &["run", "--kernel", &k, "--initrd", "/nonexistent/initrd"],
        "/nonexistent/initrd",
    );
    assert_bad_input(
        &["run", "--disk", "/nonexistent/disk.img"],
        "/nonexistent/disk.img",
    );
    assert_bad_input(
        &["run", "--serial", "file=/nonexistent/dir/out.txt"],
        "/nonexistent/dir/out.txt",
    );
}

#[test]
fn not_a_regular_file() {
    assert_bad_input(&["run", "--kernel", "/dev/zero"], "not a regular file");
    assert_bad_input(&["run", "--kernel", "/tmp"], "not a regular file");
}

#[test]
fn empty_kernel_file() {
    let empty = temp_file("empty.bin", b"");
    assert_bad_input(&["run", "--kernel", &empty], "empty");
}

#[test]
fn bad_flags() {
    assert_bad_input(&["run", "--bogus"], "--bogus");
    assert_bad_input(&["run", "--memory", "12Q"], "12Q");
    assert_bad_input(&["run", "--memory", "1M"], "2 MiB");
    assert_bad_input(&["run", "--memory", "100000000000000T"], "too large");
    assert_bad_input(&["run", "--cpus", "0"], "--cpus");
    assert_bad_input(&["run", "--cpus", "many"], "many");
    assert_bad_input(&["run", "--engine", "xen"], "xen");
    assert_bad_input(&["run", "--serial", "pty"], "pty");
    assert_bad_input(&["run", "--net", "bridge"], "bridge");
    assert_bad_input(&["walk"], "walk");
    assert_bad_input(&[], "kite run");
}

#[test]
fn bad_devices_and_networks() {
    let disk = temp_file("disk.img", &[0; 4096]);
    assert_bad_input(
        &["run", "--disk", "/nonexistent/disk.img"],
        "/nonexistent/disk.img",
    );
    assert_bad_input(
        &["run", "--disk", &format!("{disk},cache=none")],
        "cache=none",
    );
    assert_bad_input(
        &["run", "--net", "tap=kite-name-far-too-long"],
        "1 to 15 bytes",
    );
}

#[test]
fn help_is_not_an_error() {
    let r = kite(&["run", "--help"], b"");
    assert_eq!(r.status, Some(0));
    for flag in [
        "--engine",
        "--memory",
        "--cpus",
        "--kernel",
        "--initrd",
        "--cmdline",
        "--disk",
        "--net",
        "--serial",
        "--no-reboot",
    ] {
        assert!(r.stdout.contains(flag), "help lists {flag}");
    }
}

#[test]
fn unknown_emu_tier() {
    let k = temp_file("tier.elf", &kite_testkernels::hello());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kite"))
        .args(["run", "--engine", "emu", "--kernel", &k])
        .env("KITE_EMU_TIER", "fast")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("start kite");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr {stderr:?}");
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(stderr.contains("KITE_EMU_TIER=\"fast\""), "{stderr:?}");
    assert!(out.stdout.is_empty(), "no guest output expected");
}
