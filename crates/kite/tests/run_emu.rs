//! The emu engine end to end: Kite's own test kernels run on `--engine emu`
//! and print what the kvm engine prints for the same kernel.

mod common;

use common::{kite, kvm_available, temp_file};
use kite_testkernels as tk;

/// Run `kernel` on `engine`; returns (status, stdout).
fn run_on(engine: &str, kernel: &str) -> (Option<i32>, String) {
    let r = kite(&["run", "--engine", engine, "--kernel", kernel], b"");
    assert!(
        r.stderr.is_empty() || r.status == Some(1),
        "unexpected stderr on {engine}: {}",
        r.stderr
    );
    (r.status, r.stdout)
}

#[test]
fn builtin_guest_greets_on_emu() {
    let r = kite(&["run", "--engine", "emu", "--kernel", "builtin"], b"");
    assert_eq!(r.stdout.trim_end(), tk::HELLO_GREETING);
    assert_eq!(r.status, Some(tk::debug_exit_status(tk::HELLO_EXIT_VALUE)));
}

#[test]
fn compute_kernel_gives_the_same_checksum_on_both_engines() {
    let k = temp_file("compute-emu.elf", &tk::compute(0x21));
    let (status, out) = run_on("emu", &k);
    assert_eq!(
        out.trim_end(),
        format!("checksum={:016x}", tk::compute_checksum())
    );
    assert_eq!(status, Some(tk::debug_exit_status(0x21)));
    if kvm_available("compute on kvm") {
        assert_eq!(run_on("kvm", &k), (status, out), "kvm and emu differ");
    }
}

#[test]
fn exceptions_are_delivered_through_the_idt_and_recovered() {
    let k = temp_file("exceptions.elf", &tk::exceptions(0x22));
    let (status, out) = run_on("emu", &k);
    assert_eq!(out.trim_end(), tk::exceptions_report());
    assert_eq!(status, Some(tk::debug_exit_status(0x22)));
    if kvm_available("exceptions on kvm") {
        assert_eq!(run_on("kvm", &k), (status, out), "kvm and emu differ");
    }
}

#[test]
fn protected_mode_kernel_runs_on_emu() {
    let k = temp_file("hello32-emu.elf", &tk::hello32(0x11));
    let (status, out) = run_on("emu", &k);
    assert_eq!(out.trim_end(), tk::HELLO32_GREETING);
    assert_eq!(status, Some(tk::debug_exit_status(0x11)));
}

#[test]
fn triple_fault_on_emu_names_the_vcpu_state() {
    let k = temp_file("triple-emu.elf", &tk::triple_fault());
    let r = kite(
        &["run", "--engine", "emu", "--no-reboot", "--kernel", &k],
        b"",
    );
    assert_eq!(r.status, Some(1));
    let line = r.single_stderr_line();
    assert!(
        line.contains("triple fault") && line.contains("rip="),
        "{line}"
    );
}

#[test]
fn an_unimplemented_instruction_is_named_with_its_bytes_and_address() {
    let k = temp_file("unimpl.elf", &tk::unimplemented_instruction(0x23));
    let r = kite(
        &["run", "--engine", "emu", "--no-reboot", "--kernel", &k],
        b"",
    );
    // #UD with no IDT escalates to a triple fault.
    assert_eq!(r.status, Some(1), "stderr: {}", r.stderr);
    assert!(
        r.stderr
            .contains("unimplemented instruction `vzeroupper` (bytes c5 f8 77) at 0008:0x"),
        "{}",
        r.stderr
    );
}
