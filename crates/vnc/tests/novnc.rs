//! noVNC (the browser client, nobody here wrote it) in Debian's headless
//! Chromium connects straight to the WebSocket listener, with a password;
//! its canvas screenshot must show the pattern, and a key and a click it
//! sends must reach the input sink.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use kite_display::InputEvent;

fn test_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/novnc")
}

/// Where noVNC and playwright-core are installed (`npm install --prefix
/// crates/vnc/tests/novnc`, or KITE_NOVNC_MODULES).
fn node_modules() -> Option<PathBuf> {
    let dir = std::env::var_os("KITE_NOVNC_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| test_dir().join("node_modules"));
    (dir.join("@novnc/novnc/core/rfb.js").exists() && dir.join("playwright-core").exists())
        .then_some(dir)
}

/// A static file server for the page and noVNC's modules (ES modules need http://).
fn serve_files(modules: PathBuf) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let page = test_dir().join("page.html");
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut s = s;
            let mut line = String::new();
            let mut r = BufReader::new(s.try_clone().unwrap());
            if r.read_line(&mut line).is_err() {
                continue;
            }
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).map_or(true, |n| n == 0) || h == "\r\n" {
                    break;
                }
            }
            let path = line
                .split(' ')
                .nth(1)
                .unwrap_or("/")
                .split('?')
                .next()
                .unwrap_or("/");
            let file = if path == "/page.html" {
                Some(page.clone())
            } else if let Some(rest) = path.strip_prefix("/novnc/") {
                (!rest.contains("..")).then(|| modules.join("@novnc/novnc").join(rest))
            } else {
                None
            };
            match file.and_then(|f| std::fs::read(&f).ok().map(|d| (f, d))) {
                Some((f, data)) => {
                    let ctype = match f.extension().and_then(|e| e.to_str()) {
                        Some("js") => "text/javascript",
                        Some("html") => "text/html",
                        _ => "application/octet-stream",
                    };
                    let _ = write!(
                        s,
                        "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        data.len()
                    );
                    let _ = s.write_all(&data);
                }
                None => {
                    let _ = s.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                }
            }
        }
    });
    port
}

fn shot_name(shot: &Path, n: u32) -> String {
    let stem = shot.file_stem().unwrap().to_string_lossy();
    format!("{stem}-{n}.png")
}

/// Checks a canvas screenshot against the pattern (noVNC draws exact pixels).
fn check_png(path: &Path, gen: u32, w: u32, h: u32) {
    let dec = png::Decoder::new(BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(
        (info.width, info.height),
        (w, h),
        "the canvas screenshot is the screen's size"
    );
    let ch = info.color_type.samples();
    check_picture(
        |x, y| {
            let i = ((y * w + x) as usize) * ch;
            (buf[i], buf[i + 1], buf[i + 2])
        },
        gen,
        w,
        h,
        2,
    );
}

#[test]
fn novnc_in_chromium_shows_the_pattern_over_websocket() {
    let chromium = std::env::var("KITE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let install =
        "apt-get install -y chromium nodejs npm && npm install --prefix crates/vnc/tests/novnc";
    if !Path::new(&chromium).exists() || !node {
        missing("chromium and node", install);
        return;
    }
    let Some(modules) = node_modules() else {
        missing("noVNC and playwright-core (npm)", install);
        return;
    };
    let f = fixture(640, 400);
    let mut cfg = loopback();
    cfg.websocket = Some(("127.0.0.1".into(), 0));
    cfg.password = Some("browser".into());
    let server = start(cfg, &f);
    let ws = server.websocket_addr().unwrap().port();
    let http = serve_files(modules.clone());
    let shot = std::env::temp_dir().join(format!("kite-novnc-{}.png", std::process::id()));
    let mut child = Command::new("timeout")
        .arg("90")
        .arg("node")
        .arg(test_dir().join("shot.mjs"))
        .arg(format!(
            "http://127.0.0.1:{http}/page.html?ws={ws}&pw=browser"
        ))
        .arg(&shot)
        .env("KITE_NOVNC_MODULES", &modules)
        .env("KITE_CHROMIUM", &chromium)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run node");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next_line = |child: &mut std::process::Child| match lines.next() {
        Some(Ok(l)) => l,
        _ => {
            let status = child.wait();
            panic!("the noVNC driver stopped early ({status:?}); its messages are above");
        }
    };
    let first = next_line(&mut child);
    assert!(first.contains(r#""name":"kite""#), "desktop name: {first}");
    assert!(
        first.contains(r#""width":640,"height":400"#),
        "canvas size: {first}"
    );
    check_png(&shot, 0, 640, 400);

    // The bottom half changes: noVNC's next incremental update shows it.
    f.ctl.bump();
    let probe = |w: u32, h: u32, gen: u32| {
        let (x, y) = (w * 3 / 4, h * 7 / 8);
        let c = pattern(gen, x, y, w, h);
        format!(
            "{w} {h} {x} {y} {} {} {}\n",
            c >> 16,
            (c >> 8) & 0xff,
            c & 0xff
        )
    };
    stdin.write_all(probe(640, 400, 1).as_bytes()).unwrap();
    let second = next_line(&mut child);
    assert!(second.contains("-2.png"), "{second}");
    check_png(&shot.with_file_name(shot_name(&shot, 2)), 1, 640, 400);

    // The guest changes mode: DesktopSize, and noVNC redraws at the new size.
    f.ctl.resize(800, 500);
    stdin.write_all(probe(800, 500, 1).as_bytes()).unwrap();
    let third = next_line(&mut child);
    assert!(third.contains("-3.png"), "{third}");
    check_png(&shot.with_file_name(shot_name(&shot, 3)), 1, 800, 500);
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for n in [2, 3] {
        let _ = std::fs::remove_file(shot.with_file_name(shot_name(&shot, n)));
    }
    match std::env::var_os("KITE_VNC_KEEP_SHOT") {
        Some(keep) => drop(std::fs::rename(&shot, keep)),
        None => drop(std::fs::remove_file(&shot)),
    }

    let ev = f.input.wait_for(Duration::from_secs(5), |e| {
        Recorder::keys(e).contains(&(28, false))
    });
    assert!(
        Recorder::keys(&ev).starts_with(&[(28, true), (28, false)]),
        "Enter from noVNC: {ev:?}"
    );
    assert!(
        ev.iter().any(|e| matches!(e, InputEvent::PointerAbsolute { x: 30, y: 20, buttons, .. } if buttons.left())),
        "a left click at (30,20) from noVNC: {ev:?}"
    );
}
