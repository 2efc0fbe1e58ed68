//! The screen, seen by a VNC client no one here wrote: Kite's standard VGA
//! runs Debian's vgabios under SeaBIOS, and Debian's vncsnapshot grabs
//! SeaBIOS's text screen (80x25 in 9x16 cells: 720x400) through Kite's
//! VNC server.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn require(tool: &str) -> bool {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("KITE_REQUIRE_CLIENTS").is_err(),
            "{tool} is missing and KITE_REQUIRE_CLIENTS is set"
        );
        eprintln!("SKIPPED: {tool} is not installed (apt-get install -y vncsnapshot)");
    }
    ok
}

/// Kite on emu with no disk, its firmware retrying forever on a screen
/// served by VNC display `display` on 127.0.0.1, plus `extra` flags.
fn firmware_on_vnc(display: u32, extra: &[&str]) -> std::process::Child {
    let vnc = format!("vnc=127.0.0.1:{display}");
    Command::new(env!("CARGO_BIN_EXE_kite"))
        .args([
            "run",
            "--engine",
            "emu",
            "--serial",
            "none",
            "--boot",
            "c,fail=wait",
            "--display",
            &vnc,
        ])
        .args(extra)
        .stdin(Stdio::null())
        .spawn()
        .expect("start kite")
}

#[test]
fn vncsnapshot_sees_the_firmware_text_screen() {
    if !require("vncsnapshot") {
        return;
    }
    let display = 40 + (std::process::id() % 40);
    let mut kite = firmware_on_vnc(display, &[]);
    let shot = common::temp_path("screen.jpg");
    let start = Instant::now();
    let mut found = None;
    while start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(500));
        let _ = std::fs::remove_file(&shot);
        let ok = Command::new("vncsnapshot")
            .args(["-quiet", &format!("127.0.0.1:{display}")])
            .arg(&shot)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            continue;
        }
        let bytes = std::fs::read(&shot).expect("snapshot");
        let mut dec = jpeg_decoder::Decoder::new(&bytes[..]);
        let pixels = dec.decode().expect("a JPEG");
        let info = dec.info().expect("JPEG info");
        let (w, h) = (usize::from(info.width), usize::from(info.height));
        let lit = |x0: usize, y0: usize, x1: usize, y1: usize| {
            (y0..y1)
                .flat_map(|y| (x0..x1).map(move |x| (x, y)))
                .filter(|&(x, y)| pixels[(y * w + x) * 3] > 128)
                .count()
        };
        // SeaBIOS's banner on the first text row, nothing at the bottom.
        if w == 720 && h == 400 && lit(0, 0, 360, 16) > 200 {
            found = Some((lit(0, 0, 360, 16), lit(0, 300, 720, 400)));
            break;
        }
    }
    let _ = kite.kill();
    let _ = kite.wait();
    let (top, bottom) = found.expect("no 720x400 screen with SeaBIOS's banner within 60 s");
    assert!(top > 200, "{top}");
    assert_eq!(bottom, 0, "the bottom of the text screen should be empty");
}

/// `--screenshot-on-exit` saves the screen as the guest left it: SeaBIOS's
/// text screen, 720x400, banner on the first row and "No bootable device"
/// on the ninth, nothing below.
#[test]
fn screenshot_on_exit_holds_the_firmware_screen() {
    let png_path = common::temp_path("exit.png");
    let r = common::kite(
        &[
            "run",
            "--engine",
            "emu",
            "--serial",
            "none",
            "--screenshot-on-exit",
            &png_path.display().to_string(),
        ],
        b"",
    );
    assert_eq!(r.status, Some(4), "{}", r.stderr);
    let file = std::fs::File::open(&png_path).expect("the screenshot was written");
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .expect("a PNG");
    let mut buf = vec![0u8; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("PNG frame");
    assert_eq!((info.width, info.height), (720, 400));
    let w = info.width as usize;
    let lit = |y0: usize, y1: usize| {
        (y0..y1)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .filter(|&(x, y)| buf[(y * w + x) * 3] > 128)
            .count()
    };
    // Text rows are 16 pixels: row 0 the banner, row 8 the failure.
    assert!(lit(0, 16) > 200, "no banner on the first row");
    assert!(
        lit(8 * 16, 9 * 16) > 200,
        "no 'No bootable device' on row 9"
    );
    assert_eq!(lit(300, 400), 0, "the bottom of the screen should be empty");
}

/// QMP's `screendump` (driven by Python's qemu.qmp library, a client no one
/// here wrote) saves the screen as PPM (QEMU's default) and as PNG.
#[test]
fn qmp_screendump_saves_the_screen() {
    let sock = common::temp_path("screendump.sock");
    let ppm = common::temp_path("dump.ppm");
    let png_path = common::temp_path("dump.png");
    let display = 40 + ((std::process::id() + 17) % 40);
    let qmp = format!("unix:{},server=on,wait=off", sock.display());
    let mut kite = firmware_on_vnc(display, &["--qmp", &qmp]);
    let script = r#"
import asyncio, sys
from qemu.qmp import QMPClient
async def main(sock, ppm, png):
    qmp = QMPClient("screendump-test")
    for _ in range(200):
        try:
            await qmp.connect(sock)
            break
        except Exception:
            await asyncio.sleep(0.05)
    await asyncio.sleep(1.5)  # SeaBIOS has drawn its screen by then
    await qmp.execute("screendump", {"filename": ppm})
    await qmp.execute("screendump", {"filename": png, "format": "png"})
    try:
        await qmp.execute("screendump", {"filename": png, "format": "gif"})
        print("gif accepted"); sys.exit(1)
    except Exception:
        pass
    await qmp.execute("quit")
    await qmp.disconnect()
asyncio.run(main(*sys.argv[1:4]))
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(&sock)
        .arg(&ppm)
        .arg(&png_path)
        .output()
        .expect("python3 (with `pip install qemu.qmp`) must be installed");
    let status = kite.wait().expect("kite exits after quit");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(status.code(), Some(0));
    let p = std::fs::read(&ppm).expect("the PPM");
    assert!(
        p.starts_with(b"P6\n720 400\n255\n"),
        "{:?}",
        &p[..16.min(p.len())]
    );
    assert_eq!(p.len(), 15 + 720 * 400 * 3);
    assert!(
        p[15..15 + 720 * 16 * 3].iter().any(|&b| b > 128),
        "no banner"
    );
    let file = std::fs::File::open(&png_path).expect("the PNG");
    let reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .expect("a PNG");
    assert_eq!((reader.info().width, reader.info().height), (720, 400));
}

/// Whether Python can import `module`; like `require` for a Python client.
fn python_has(module: &str, install: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("KITE_REQUIRE_CLIENTS").is_err(),
            "python3 module {module} is missing and KITE_REQUIRE_CLIENTS is set"
        );
        eprintln!("SKIPPED: python3 cannot import {module} ({install})");
    }
    ok
}

/// A whole Linux PC used through VNC: SeaBIOS boots Debian i686 from a
/// SYSLINUX disk with its console on the VGA (and the serial port). Python's
/// vncdotool types a command on the guest's keyboard that the shell on tty1
/// runs (its output reaches the serial port), checks every cell of the text
/// screen it sees against the guest's own /dev/vcsa1, then has the guest
/// load bochs-drm: the client must get the 1024x768 DesktopSize and the same
/// cell-by-cell match on fbcon's framebuffer console.
#[test]
fn a_linux_console_is_typed_on_and_seen_over_vnc_through_a_mode_switch() {
    if !python_has("vncdotool", "pip install vncdotool") {
        return;
    }
    let cmd = "w() { i=0; while [ ! -e /tmp/$1 ] && [ $i -lt 300 ]; do sleep 1; i=$((i+1)); done; }; \
               dump() { sleep 2; echo vcsa-begin-$1; od -An -tx1 -v /dev/vcsa1; echo vcsa-end-$1; }; \
               w typed; dump text; w drm; kite-drm; sleep 3; \
               echo fb-size $(cat /sys/class/graphics/fb0/virtual_size); dump fb; w done";
    // /dev/console is the last console=: the command's output goes to the
    // serial port, the kernel's messages to both.
    let image = common::pc_image(
        "disk",
        "686",
        &format!("console=tty0 console=ttyS0 panic=-1 kite_vt=1 kite_cmd=\"{cmd}\""),
    );
    let display = 40 + ((std::process::id() + 29) % 40);
    let serial_log = common::temp_path("linux-console.serial");
    let log = std::fs::File::create(&serial_log).expect("serial log");
    let disk = format!("{},if=ide", image.display());
    let mut kite = Command::new(env!("CARGO_BIN_EXE_kite"))
        .args([
            "run", "--engine", "emu", "--memory", "256M", "--disk", &disk,
        ])
        .args(["--display", &format!("vnc=127.0.0.1:{display}")])
        .stdin(Stdio::null())
        .stdout(log)
        .spawn()
        .expect("start kite");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/display/linux_console.py"
    );
    let mut driver = Command::new("python3")
        .arg(script)
        .arg((5900 + display).to_string())
        .arg(&serial_log)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    let start = Instant::now();
    while driver.try_wait().expect("wait").is_none() && start.elapsed() < Duration::from_secs(420) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = driver.kill();
    let out = driver.wait_with_output().expect("driver output");
    let driver_out = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let start = Instant::now();
    while kite.try_wait().expect("wait").is_none() && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = kite.kill();
    let status = kite.wait().expect("kite");
    let serial = std::fs::read_to_string(&serial_log).unwrap_or_default();
    assert!(
        out.status.success() && driver_out.contains("linux-console-ok"),
        "the VNC driver failed:\n{driver_out}\nserial:\n{serial}"
    );
    assert_eq!(status.code(), Some(0), "{serial}");
    for want in [
        "kite-vnc-42",
        "[drm] Initialized bochs-drm",
        "fb-size 1024,768",
        "reboot: Power down",
    ] {
        assert!(
            serial.contains(want),
            "no {want:?} on the serial port:\n{serial}"
        );
    }
    for bad in common::KERNEL_TROUBLE {
        assert!(!serial.contains(bad), "{bad:?} in\n{serial}");
    }
    eprintln!("{driver_out}");
}
