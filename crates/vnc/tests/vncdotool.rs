//! Python's vncdotool (nobody here wrote it) types keys and moves and clicks
//! the mouse; the display's input sink must see the matching evdev events.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use kite_display::{Buttons, InputEvent};

fn have_vncdotool() -> bool {
    Command::new("vncdotool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn vncdo(port: u16, password: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new("timeout");
    cmd.args(["30", "vncdotool", "-s", &format!("127.0.0.1::{port}")]);
    if let Some(p) = password {
        cmd.args(["-p", p]);
    }
    cmd.args(args).output().expect("run vncdotool")
}

const SHIFT: u16 = 42;

#[test]
fn vncdotool_types_and_points() {
    if !have_vncdotool() && !missing("vncdotool", "pip install vncdotool") {
        return;
    }
    let f = fixture(800, 600);
    let mut cfg = loopback();
    cfg.password = Some("typist".into());
    let server = start(cfg, &f);
    let port = server.local_addr().unwrap().port();
    let out = vncdo(
        port,
        Some("typist"),
        &[
            "type", "Hi!", "key", "enter", "key", "ctrl-c", "move", "100", "50", "click", "1",
            "move", "799", "599",
        ],
    );
    assert!(
        out.status.success(),
        "vncdotool failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ev = f.input.wait_for(Duration::from_secs(5), |e| {
        e.iter()
            .any(|e| matches!(e, InputEvent::PointerAbsolute { x: 799, .. }))
    });
    let keys = Recorder::keys(&ev);
    let (h, i, one, enter, ctrl, c) = (35, 23, 2, 28, 29, 46);
    assert_eq!(
        keys,
        vec![
            (SHIFT, true),
            (h, true),
            (h, false),
            (SHIFT, false),
            (i, true),
            (i, false),
            (SHIFT, true),
            (one, true),
            (one, false),
            (SHIFT, false),
            (enter, true),
            (enter, false),
            (ctrl, true),
            (c, true),
            (c, false),
            (ctrl, false),
        ],
        "typed 'Hi!', Enter, Ctrl-C"
    );
    let pointer: Vec<(u32, u32, u8)> = ev
        .iter()
        .filter_map(|e| match e {
            InputEvent::PointerAbsolute {
                x,
                y,
                width: 800,
                height: 600,
                buttons,
            } => Some((*x, *y, buttons.0)),
            _ => None,
        })
        .collect();
    let down = pointer.iter().position(|p| *p == (100, 50, Buttons::LEFT));
    assert!(down.is_some(), "a left press at (100,50): {pointer:?}");
    let up = pointer[down.unwrap()..]
        .iter()
        .position(|p| *p == (100, 50, 0));
    assert!(up.is_some(), "then a release there: {pointer:?}");
    assert_eq!(
        pointer.last(),
        Some(&(799, 599, 0)),
        "the bottom-right corner"
    );
}

#[test]
fn vncdotool_with_a_wrong_password_gets_nothing_in() {
    if !have_vncdotool() && !missing("vncdotool", "pip install vncdotool") {
        return;
    }
    let f = fixture(320, 240);
    let mut cfg = loopback();
    cfg.password = Some("right".into());
    let server = start(cfg, &f);
    let port = server.local_addr().unwrap().port();
    let out = vncdo(port, Some("wrong"), &["-t", "10", "type", "x"]);
    assert!(
        !out.status.success(),
        "vncdotool must fail with a wrong password"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(f.input.take().is_empty(), "no key got through");
}

#[test]
fn vncdotool_captures_the_screen() {
    if !have_vncdotool() && !missing("vncdotool", "pip install vncdotool") {
        return;
    }
    let f = fixture(400, 300);
    let server = start(loopback(), &f);
    let port = server.local_addr().unwrap().port();
    let png_path =
        std::env::temp_dir().join(format!("kite-vnc-capture-{}.png", std::process::id()));
    let out = vncdo(port, None, &["capture", png_path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "vncdotool failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dec = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&png_path).unwrap(),
    ));
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (400, 300));
    let ch = info.color_type.samples();
    check_picture(
        |x, y| {
            let i = ((y * 400 + x) as usize) * ch;
            (buf[i], buf[i + 1], buf[i + 2])
        },
        0,
        400,
        300,
        0,
    );
    let _ = std::fs::remove_file(png_path);
}
