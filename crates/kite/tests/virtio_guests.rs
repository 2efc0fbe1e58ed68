//! Debian's stock amd64 kernel on the emu engine with virtio devices: one
//! boot writes a marker to a raw disk (the host finds it in the image),
//! mounts a read-only ext4 image made on the host and reads its file, is
//! refused a write to that read-only disk, and reads the entropy device.
//! Other boots ping over a tap, fetch files from a host HTTP server over
//! `--net user`, and serve a page to the host through a `hostfwd`.
//! The guest comes from scripts/guests.sh (it is not in the repository).

mod common;

use std::io::Read;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{kite, temp_path};

/// A boot of the stock kernel on the software engine takes 20-60 s.
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);

/// The amd64 guest built by scripts/guests.sh with the virtio modules.
fn guest_dir() -> PathBuf {
    let mut tried = Vec::new();
    let mut candidates = Vec::new();
    if let Some(c) = std::env::var_os("KITE_GUEST_CACHE") {
        candidates.push(PathBuf::from(c));
    }
    if let Some(h) = std::env::var_os("HOME") {
        candidates.push(Path::new(&h).join(".cache/kite-guests"));
    }
    candidates.push(PathBuf::from("/var/cache/kite-guests"));
    for c in candidates {
        let d = c.join("amd64");
        if d.join("vmlinuz").is_file()
            && d.join("initrd.gz").is_file()
            && d.join(".layout-virtio").exists()
        {
            return d;
        }
        tried.push(d.display().to_string());
    }
    panic!(
        "no amd64 guest with virtio modules in {tried:?}: run scripts/guests.sh \
         (or set KITE_GUEST_CACHE to where it put the guests)"
    );
}

/// Run kite to completion (or the timeout), returning status and stdout.
fn run_guest(args: &[String]) -> (Option<i32>, String, String) {
    run_guest_in(None, args)
}

/// As `run_guest`, inside network namespace `netns` when given.
fn run_guest_in(netns: Option<&str>, args: &[String]) -> (Option<i32>, String, String) {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_kite")]);
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_kite")),
    };
    let mut child = cmd
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kite");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s.code();
        }
        if start.elapsed() > BOOT_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = String::from_utf8_lossy(&reader.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    (status, stdout, stderr)
}

/// An ext4 image holding `hello.txt`, made with mkfs.ext4 -d.
fn ext4_image(text: &str) -> PathBuf {
    let dir = temp_path("ext4-root");
    std::fs::create_dir_all(&dir).expect("ext4 root dir");
    std::fs::write(dir.join("hello.txt"), text).expect("hello.txt");
    let img = temp_path("ext4.img");
    let f = std::fs::File::create(&img).expect("ext4 image");
    f.set_len(16 << 20).expect("size the ext4 image");
    drop(f);
    let ok = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&dir)
        .arg(&img)
        .status()
        .unwrap_or_else(|e| panic!("mkfs.ext4 (e2fsprogs) is needed for this test: {e}"));
    assert!(ok.success(), "mkfs.ext4 -d failed");
    img
}

#[test]
fn guest_uses_disks_and_entropy_over_virtio_pci() {
    let guest = guest_dir();
    let raw = temp_path("raw.img");
    std::fs::write(&raw, vec![0u8; 8 << 20]).expect("raw image");
    let ext4 = ext4_image("hello from the host's ext4\n");

    let script = [
        "echo KITE-VIRTIO-MARKER-7c1e > /dev/vda",
        "sync",
        "mount -t ext4 -o ro /dev/vdb /mnt && cat /mnt/hello.txt",
        "if dd if=/dev/zero of=/dev/vdb bs=512 count=1 conv=fsync 2>/dev/null; then echo RO-WRITE-ACCEPTED; else echo RO-WRITE-REFUSED; fi",
        "echo rng=$(cat /sys/class/misc/hw_random/rng_current)",
        "echo entropy=$(head -c 32 /dev/hwrng | od -An -tx1 | tr -d ' \\n')",
        "grep virtio /proc/interrupts",
    ]
    .join("; ");
    let args: Vec<String> = vec![
        "run".into(),
        "--engine".into(),
        "emu".into(),
        "--kernel".into(),
        guest.join("vmlinuz").display().to_string(),
        "--initrd".into(),
        guest.join("initrd.gz").display().to_string(),
        "--disk".into(),
        raw.display().to_string(),
        "--disk".into(),
        format!("{},readonly", ext4.display()),
        "--serial".into(),
        "stdio".into(),
        "--no-reboot".into(),
        "--cmdline".into(),
        format!("console=ttyS0 panic=-1 quiet kite_cmd=\"{script}\""),
    ];
    let (status, out, err) = run_guest(&args);
    assert_eq!(
        status,
        Some(0),
        "guest did not power off cleanly; stderr {err:?}\n{out}"
    );
    assert!(
        out.contains("kite-guest: done"),
        "script did not finish:\n{out}"
    );

    // The raw disk: the marker is at the start of the image.
    let image = std::fs::read(&raw).expect("read raw image");
    assert!(
        image.starts_with(b"KITE-VIRTIO-MARKER-7c1e\n"),
        "marker not in the image; guest said:\n{out}"
    );

    // The ext4 disk: mounted, read, and not writable.
    assert!(
        out.contains("hello from the host's ext4"),
        "ext4 file not read:\n{out}"
    );
    assert!(
        out.contains("RO-WRITE-REFUSED"),
        "read-only disk took a write:\n{out}"
    );

    // The entropy device is the current hwrng and gives 32 varied bytes.
    assert!(
        out.contains("rng=virtio_rng"),
        "virtio-rng is not the hwrng:\n{out}"
    );
    let hex = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("entropy="))
        .unwrap_or_else(|| panic!("no entropy line:\n{out}"));
    assert_eq!(
        hex.len(),
        64,
        "expected 32 bytes from /dev/hwrng, got {hex:?}"
    );
    let distinct: std::collections::BTreeSet<char> = hex.chars().collect();
    assert!(distinct.len() > 4, "entropy looks constant: {hex}");
    // The driver took MSI-X vectors.
    assert!(
        out.lines()
            .any(|l| l.contains("PCI-MSI") && l.contains("virtio0-req")),
        "virtio-blk is not on MSI-X:\n{out}"
    );
}

#[test]
fn a_locked_disk_image_is_refused_in_one_line() {
    let img = temp_path("locked.img");
    std::fs::write(&img, vec![0u8; 1 << 20]).expect("image");
    let holder = std::fs::File::open(&img).expect("open image");
    // SAFETY: flock on a descriptor this test owns.
    let r = unsafe { libc::flock(holder.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    assert_eq!(r, 0, "test could not lock its own image");
    let disk = img.display().to_string();
    for spec in [disk.clone(), format!("{disk},readonly")] {
        let r = kite(&["run", "--engine", "emu", "--disk", &spec], b"");
        assert_eq!(r.status, Some(2), "{spec}: stderr {:?}", r.stderr);
        let line = r.single_stderr_line();
        assert!(line.contains("locked") && line.contains(&disk), "{line}");
    }
    drop(holder);
}

/// A host tap interface for one test, removed when dropped.
/// A TAP device with an address, inside a network namespace of the test's
/// own (so the guest's traffic never touches the host's own network), and
/// the namespace removed again (with the tap) on drop.
struct HostTap {
    netns: String,
}

impl HostTap {
    fn create(name: &str, cidr: &str) -> HostTap {
        let ip = |args: &[&str]| {
            let st = Command::new("ip").args(args).status().unwrap_or_else(|e| {
                panic!("this test needs iproute2's ip (and root for a netns and a tap): {e}")
            });
            assert!(
                st.success(),
                "ip {args:?} failed: a network namespace and a tap need root (CAP_NET_ADMIN, CAP_SYS_ADMIN)"
            );
        };
        let netns = format!("{name}-ns");
        let _ = Command::new("ip")
            .args(["netns", "del", &netns])
            .stderr(Stdio::null())
            .status();
        ip(&["netns", "add", &netns]);
        let tap = HostTap { netns };
        let ns = tap.netns.as_str();
        ip(&["-n", ns, "link", "set", "lo", "up"]);
        ip(&["-n", ns, "tuntap", "add", "dev", name, "mode", "tap"]);
        ip(&["-n", ns, "addr", "add", cidr, "dev", name]);
        ip(&["-n", ns, "link", "set", name, "up"]);
        tap
    }
}

impl Drop for HostTap {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
    }
}

#[test]
fn guest_pings_the_host_over_a_tap() {
    let guest = guest_dir();
    let name = format!("kitevt{}", std::process::id() % 100_000);
    let tap = HostTap::create(&name, "10.0.77.1/24");
    let script = "ip link set eth0 up; ip addr add 10.0.77.2/24 dev eth0; \
                  ping -c 3 -W 3 10.0.77.1";
    let args: Vec<String> = vec![
        "run".into(),
        "--engine".into(),
        "emu".into(),
        "--kernel".into(),
        guest.join("vmlinuz").display().to_string(),
        "--initrd".into(),
        guest.join("initrd.gz").display().to_string(),
        "--net".into(),
        format!("tap={name}"),
        "--serial".into(),
        "stdio".into(),
        "--no-reboot".into(),
        "--cmdline".into(),
        format!("console=ttyS0 panic=-1 quiet kite_cmd=\"{script}\""),
    ];
    let (status, out, err) = run_guest_in(Some(&tap.netns), &args);
    assert_eq!(
        status,
        Some(0),
        "guest did not power off cleanly; stderr {err:?}\n{out}"
    );
    assert!(
        out.contains("3 packets transmitted, 3 packets received"),
        "ping over the tap failed:\n{out}"
    );
    assert!(out.contains("kite-guest: done, status 0"), "{out}");
}

#[test]
fn a_disk_survives_a_reboot_and_its_lock_is_released() {
    let guest = guest_dir();
    let raw = temp_path("reboot.img");
    std::fs::write(&raw, vec![0u8; 1 << 20]).expect("raw image");
    // First boot: mark the disk and reboot; the rebuilt machine must reopen
    // (and relock) the image and see the mark.
    // pci=nomsi: this boot exercises the INTx path (level, ISR read clears).
    let script = "if head -c 6 /dev/vda | grep -q BOOTED; then echo SECOND-BOOT-SEES-DISK; \
                  grep virtio /proc/interrupts; else echo BOOTED > /dev/vda; sync; echo FIRST-BOOT-REBOOTING; reboot -f; fi";
    let args: Vec<String> = vec![
        "run".into(),
        "--engine".into(),
        "emu".into(),
        "--kernel".into(),
        guest.join("vmlinuz").display().to_string(),
        "--initrd".into(),
        guest.join("initrd.gz").display().to_string(),
        "--disk".into(),
        raw.display().to_string(),
        "--serial".into(),
        "stdio".into(),
        "--cmdline".into(),
        format!("console=ttyS0 panic=-1 quiet pci=nomsi kite_cmd=\"{script}\""),
    ];
    let (status, out, err) = run_guest(&args);
    assert_eq!(status, Some(0), "stderr {err:?}\n{out}");
    assert!(out.contains("FIRST-BOOT-REBOOTING"), "{out}");
    assert!(out.contains("SECOND-BOOT-SEES-DISK"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("IO-APIC") && l.contains("fasteoi") && l.contains("virtio0")),
        "virtio-blk is not on a level-triggered INTx line:\n{out}"
    );
}

/// Data the guest flushed is in the host file even when kite is killed with
/// SIGKILL right after: the guest writes a marker with `dd
/// conv=fsync` (a virtio-blk FLUSH, fdatasync on the host), says so, and
/// the test kills kite as soon as it reads that line.
#[test]
fn flushed_data_survives_kill_9() {
    let guest = guest_dir();
    let raw = temp_path("kill9.img");
    std::fs::write(&raw, vec![0u8; 4 << 20]).expect("raw image");
    let script = "echo KITE-FLUSHED-BEFORE-KILL-5d2a | dd of=/dev/vda conv=fsync 2>/dev/null; \
                  echo FLUSHED-NOW-KILL; sleep 600";
    let mut child = Command::new(env!("CARGO_BIN_EXE_kite"))
        .args([
            "run",
            "--engine",
            "emu",
            "--kernel",
            &guest.join("vmlinuz").display().to_string(),
            "--initrd",
            &guest.join("initrd.gz").display().to_string(),
            "--disk",
            &raw.display().to_string(),
            "--cmdline",
            &format!("console=ttyS0 panic=-1 kite_cmd=\"{script}\""),
            "--no-reboot",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start kite");
    let mut out = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            // Only the guest's own line, not the kernel's echo of its command line.
            if String::from_utf8_lossy(&seen)
                .lines()
                .any(|l| l.trim_end() == "FLUSHED-NOW-KILL")
            {
                let _ = tx.send(());
                break;
            }
        }
    });
    let flushed = rx.recv_timeout(BOOT_TIMEOUT).is_ok();
    // SIGKILL: no destructors, no chance to write anything more.
    let _ = child.kill();
    let _ = child.wait();
    assert!(flushed, "the guest never reported its flush");
    let image = std::fs::read(&raw).expect("read the image");
    let marker = b"KITE-FLUSHED-BEFORE-KILL-5d2a";
    assert!(
        image.windows(marker.len()).any(|w| w == marker),
        "the flushed marker is not in the image after kill -9"
    );
}

/// A tiny HTTP/1.0 server on 127.0.0.1: `/file` is `small`, `/big` is `big`.
fn http_server(small: Vec<u8>, big: Vec<u8>) -> u16 {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the HTTP server");
    let port = listener.local_addr().expect("server address").port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let req = String::from_utf8_lossy(&req);
            let body = if req.starts_with("GET /file ") {
                &small
            } else if req.starts_with("GET /big ") {
                &big
            } else {
                let _ = conn.write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n");
                continue;
            };
            let head = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
            let _ = conn.write_all(head.as_bytes());
            let _ = conn.write_all(body);
        }
    });
    port
}

#[test]
fn guest_fetches_a_file_from_the_host_over_user_networking() {
    let guest = guest_dir();
    let small: String = (0..200)
        .map(|i| format!("kite-user-net line {i:03} {}\n", i * 7919 % 10007))
        .collect();
    let big: Vec<u8> = (0..262_144u32).map(|i| (i % 251) as u8).collect();
    let port = http_server(small.clone().into_bytes(), big);
    let script = format!(
        "ip addr add 10.0.2.15/24 dev eth0; ip link set eth0 up; \
         ip route add default via 10.0.2.2; \
         wget -O - http://10.0.2.2:{port}/file; \
         wget -q -O /tmp/big http://10.0.2.2:{port}/big && echo big-size $(wc -c < /tmp/big)"
    );
    let args: Vec<String> = vec![
        "run".into(),
        "--engine".into(),
        "emu".into(),
        "--kernel".into(),
        guest.join("vmlinuz").display().to_string(),
        "--initrd".into(),
        guest.join("initrd.gz").display().to_string(),
        "--net".into(),
        "user".into(),
        "--serial".into(),
        "stdio".into(),
        "--no-reboot".into(),
        "--cmdline".into(),
        format!("console=ttyS0 panic=-1 quiet kite_cmd=\"{script}\""),
    ];
    let (status, out, err) = run_guest(&args);
    assert_eq!(
        status,
        Some(0),
        "guest did not power off cleanly; stderr {err:?}\n{out}"
    );
    let got = out.replace("\r\n", "\n");
    assert!(
        got.contains(&small),
        "the file did not arrive intact over --net user:\n{out}"
    );
    assert!(
        got.contains("big-size 262144"),
        "the 256 KiB file did not arrive whole:\n{out}"
    );
}

#[test]
fn host_reaches_a_guest_web_server_through_hostfwd() {
    use std::io::Write;
    let guest = guest_dir();
    let hport = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("find a free port");
        l.local_addr().expect("port").port()
    };
    let script = "ip addr add 10.0.2.15/24 dev eth0; ip link set eth0 up; \
                  mkdir -p /tmp/www; echo kite-hostfwd-page > /tmp/www/index.html; \
                  httpd -p 8080 -h /tmp/www; sleep 20";
    let args: Vec<String> = vec![
        "run".into(),
        "--engine".into(),
        "emu".into(),
        "--kernel".into(),
        guest.join("vmlinuz").display().to_string(),
        "--initrd".into(),
        guest.join("initrd.gz").display().to_string(),
        "--net".into(),
        format!("user,hostfwd=tcp:127.0.0.1:{hport}-:8080"),
        "--serial".into(),
        "stdio".into(),
        "--no-reboot".into(),
        "--cmdline".into(),
        format!("console=ttyS0 panic=-1 quiet kite_cmd=\"{script}\""),
    ];
    // Ask until the guest's server answers (or the guest is gone).
    let guest_gone = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gone = guest_gone.clone();
    let client = std::thread::spawn(move || {
        let end = Instant::now() + BOOT_TIMEOUT;
        while Instant::now() < end && !gone.load(std::sync::atomic::Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(500));
            let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", hport)) else {
                continue;
            };
            let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
            if c.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").is_err() {
                continue;
            }
            let mut resp = Vec::new();
            let _ = c.read_to_end(&mut resp);
            let resp = String::from_utf8_lossy(&resp).into_owned();
            if resp.contains("kite-hostfwd-page") {
                return Some(resp);
            }
        }
        None
    });
    let (status, out, err) = run_guest(&args);
    guest_gone.store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        status,
        Some(0),
        "guest did not power off cleanly; stderr {err:?}\n{out}"
    );
    let resp = client.join().expect("client thread");
    assert!(
        resp.as_deref().is_some_and(|r| r.starts_with("HTTP/1.")),
        "the guest's web server was not reached through hostfwd:\n{out}"
    );
}
