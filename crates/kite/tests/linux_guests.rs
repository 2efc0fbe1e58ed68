//! Debian's stock kernels boot on the emu engine: x86_64 (long-mode paging),
//! i386 686 (two-level non-PAE paging) and 686-pae (PAE), each with a static
//! busybox initramfs. The guest runs a shell loop, reads /proc/cpuinfo and
//! dmesg, and powers off; Kite must end with status 0 and the kernel log must
//! hold no warning, oops or BUG.
//!
//! The guests come from `scripts/guests.sh all` (Debian packages, cached
//! outside the checkout in $KITE_GUEST_CACHE, default ~/.cache/kite-guests).

mod common;

use std::time::Duration;

use common::{guest_dir, KERNEL_TROUBLE as BAD};

fn boot(flavour: &str, machine: &str) {
    let dir = guest_dir(flavour);
    let cmd = "uname -m; grep -c ^processor /proc/cpuinfo; grep -m1 ^flags /proc/cpuinfo; \
               i=0; while [ $i -lt 50 ]; do i=$((i+1)); done; echo loop=$i; \
               dmesg | grep -m1 -o 'Linux version [0-9.]*'; echo guest-ok";
    let cmdline = format!("console=ttyS0 panic=-1 kite_cmd=\"{cmd}\"");
    let r = common::kite_with_timeout(
        &[
            "run",
            "--engine",
            "emu",
            "--memory",
            "256M",
            "--kernel",
            &dir.join("vmlinuz").display().to_string(),
            "--initrd",
            &dir.join("initrd.gz").display().to_string(),
            "--cmdline",
            &cmdline,
            "--no-reboot",
        ],
        b"",
        Duration::from_secs(600),
    );
    let out = &r.stdout;
    let tail: String = out
        .lines()
        .rev()
        .take(30)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(
        r.status,
        Some(0),
        "{flavour}: kite status {:?}; stderr: {}; console tail:\n{tail}",
        r.status,
        r.stderr
    );
    let lines: Vec<&str> = out.lines().map(|l| l.trim_end_matches('\r')).collect();
    // The commands' output, without the kernel's own messages, which reach
    // the same console whenever a driver prints (psmouse probes late).
    let after = |marker: &str| -> Vec<&str> {
        lines
            .iter()
            .skip_while(|l| !l.starts_with(marker))
            .skip(1)
            .filter(|l| !is_kernel_message(l))
            .copied()
            .collect()
    };
    let results = after("kite-guest: running:");
    assert!(
        results.len() >= 6,
        "{flavour}: the commands did not run; console tail:\n{tail}"
    );
    assert_eq!(results[0], machine, "{flavour}: uname -m");
    assert_eq!(results[1], "1", "{flavour}: processors in /proc/cpuinfo");
    assert!(
        results[2].starts_with("flags")
            && results[2].contains(" fpu ")
            && results[2].contains(" sse2 "),
        "{flavour}: {}",
        results[2]
    );
    assert_eq!(results[3], "loop=50", "{flavour}: shell loop");
    assert!(
        results[4].starts_with("Linux version 6."),
        "{flavour}: dmesg holds the boot banner: {}",
        results[4]
    );
    assert_eq!(results[5], "guest-ok");
    assert!(
        out.contains("reboot: Power down"),
        "{flavour}: no ACPI power-off; tail:\n{tail}"
    );
    for bad in BAD {
        let hit: Vec<&&str> = lines.iter().filter(|l| l.contains(bad)).collect();
        assert!(hit.is_empty(), "{flavour}: kernel log has {bad:?}: {hit:?}");
    }
}

#[test]
fn debian_amd64_boots_to_a_shell_and_powers_off() {
    boot("amd64", "x86_64");
}

#[test]
fn debian_686_boots_to_a_shell_and_powers_off() {
    boot("686", "i686");
}

#[test]
fn debian_686_pae_boots_to_a_shell_and_powers_off() {
    boot("686-pae", "i686");
}

/// A printk line on the console: `[    1.234567] ...`.
fn is_kernel_message(line: &str) -> bool {
    line.strip_prefix('[')
        .and_then(|r| r.split_once(']'))
        .is_some_and(|(t, _)| {
            let t = t.trim();
            !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || c == '.')
        })
}
