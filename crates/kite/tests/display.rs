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

#[test]
fn vncsnapshot_sees_the_firmware_text_screen() {
    if !require("vncsnapshot") {
        return;
    }
    let display = 40 + (std::process::id() % 40);
    let mut kite = Command::new(env!("CARGO_BIN_EXE_kite"))
        .args([
            "run",
            "--engine",
            "emu",
            "--serial",
            "none",
            "--boot",
            "c,fail=wait",
            "--display",
            &format!("vnc=127.0.0.1:{display}"),
        ])
        .stdin(Stdio::null())
        .spawn()
        .expect("start kite");
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
