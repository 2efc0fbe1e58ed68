//! Helpers shared by the whole-binary tests: run the built kite, write test
//! kernels to temporary files.

#![allow(dead_code)]

pub mod ide;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs of a guest that should end on its own are cut off after this long.
const TIMEOUT: Duration = Duration::from_secs(60);

pub struct Run {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The one line kite printed on stderr; fails the test otherwise.
    pub fn single_stderr_line(&self) -> &str {
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "expected exactly one stderr line, got: {:?}",
            self.stderr
        );
        lines[0]
    }
}

/// Run kite with `args`, feeding `stdin`.
pub fn kite(args: &[&str], stdin: &[u8]) -> Run {
    kite_with_timeout(args, stdin, TIMEOUT)
}

/// Run kite with `args`, cut off after `timeout` (whole-Linux boots).
pub fn kite_with_timeout(args: &[&str], stdin: &[u8], timeout: Duration) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kite"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kite");
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&data);
        // Keep stdin open a moment so a guest's console is not at EOF at once.
        std::thread::sleep(Duration::from_millis(50));
    });
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().expect("output");
    let _ = feeder.join();
    Run {
        status: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// A fresh temporary path for this test process.
pub fn temp_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kite-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join(name)
}

/// Write `bytes` to a temporary file and return its path as a string.
pub fn temp_file(name: &str, bytes: &[u8]) -> String {
    let p = temp_path(name);
    std::fs::write(&p, bytes).expect("write temp file");
    p.display().to_string()
}

/// Whether the kvm engine can run here; prints why not when it cannot.
pub fn kvm_available(test: &str) -> bool {
    if std::path::Path::new("/dev/kvm").exists() {
        true
    } else {
        eprintln!("skipping {test}: /dev/kvm is absent on this host");
        false
    }
}

/// The directory of a Debian guest fetched by `scripts/guests.sh`
/// ($KITE_GUEST_CACHE/<flavour>, default ~/.cache/kite-guests/<flavour>),
/// holding vmlinuz and initrd.gz; fails the test when missing.
pub fn guest_dir(flavour: &str) -> PathBuf {
    let cache = std::env::var("KITE_GUEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                .join(".cache/kite-guests")
        });
    let dir = cache.join(flavour);
    assert!(
        dir.join("vmlinuz").is_file() && dir.join("initrd.gz").is_file(),
        "no {flavour} guest in {}: run scripts/guests.sh all (KITE_GUEST_CACHE={})",
        dir.display(),
        cache.display()
    );
    dir
}

/// Kernel log lines that mean something went wrong in a Linux guest.
pub const KERNEL_TROUBLE: &[&str] = &[
    "WARNING:",
    "BUG:",
    "Oops",
    "Call Trace",
    "Kernel panic",
    "unimplemented instruction",
];

/// Build a bootable image with scripts/pc-images.sh: `kind` is "disk"
/// (MBR + FAT32 + SYSLINUX) or "iso" (El Torito + ISOLINUX), around the
/// Debian guest `flavour` with kernel command line `append`.
pub fn pc_image(kind: &str, flavour: &str, append: &str) -> PathBuf {
    let dir = guest_dir(flavour);
    let out = temp_path(&format!("{flavour}-{kind}.img"));
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pc-images.sh");
    let st = Command::new(&script)
        .arg(kind)
        .arg(&out)
        .arg(dir.join("vmlinuz"))
        .arg(dir.join("initrd.gz"))
        .arg(append)
        .status()
        .expect("run scripts/pc-images.sh");
    assert!(st.success(), "scripts/pc-images.sh {kind} failed");
    out
}
