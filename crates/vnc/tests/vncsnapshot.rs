//! Debian's vncsnapshot (a TightVNC-based viewer nobody here wrote) grabs the
//! screen; the JPEG must show the pattern. With and without a password.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

fn have_vncsnapshot() -> bool {
    Command::new("vncsnapshot").arg("-help").output().is_ok()
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kite-vnc-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A VNC password file as `vncpasswd` writes it: the password padded to 8
/// bytes, DES-encrypted with VNC's well-known fixed key.
fn write_vnc_passwd_file(path: &Path, password: &str) {
    use des::cipher::generic_array::GenericArray;
    use des::cipher::{BlockEncrypt, KeyInit};
    let fixed: [u8; 8] = [23, 82, 107, 6, 35, 78, 88, 7];
    let key: Vec<u8> = fixed.iter().map(|b| b.reverse_bits()).collect();
    let mut block = [0u8; 8];
    for (d, s) in block.iter_mut().zip(password.bytes()) {
        *d = s;
    }
    let c = des::Des::new(GenericArray::from_slice(&key));
    let mut b = GenericArray::clone_from_slice(&block);
    c.encrypt_block(&mut b);
    std::fs::write(path, b.as_slice()).unwrap();
}

fn snapshot(port: u16, out: &Path, passwd: Option<&Path>) -> std::process::Output {
    let mut cmd = Command::new("timeout");
    cmd.args(["20", "vncsnapshot", "-quality", "95", "-quiet"]);
    if let Some(p) = passwd {
        cmd.arg("-passwd").arg(p);
    }
    cmd.arg(format!("127.0.0.1::{port}")).arg(out);
    cmd.output().expect("run vncsnapshot")
}

fn check_jpeg(path: &Path, gen: u32, w: u32, h: u32) {
    let data = std::fs::read(path).expect("vncsnapshot wrote no file");
    let mut dec = jpeg_decoder::Decoder::new(std::io::Cursor::new(data));
    let pixels = dec.decode().expect("a JPEG");
    let info = dec.info().unwrap();
    assert_eq!((u32::from(info.width), u32::from(info.height)), (w, h));
    assert_eq!(info.pixel_format, jpeg_decoder::PixelFormat::RGB24);
    check_picture(
        |x, y| {
            let i = ((y * w + x) * 3) as usize;
            (pixels[i], pixels[i + 1], pixels[i + 2])
        },
        gen,
        w,
        h,
        40,
    );
}

#[test]
fn vncsnapshot_grabs_the_pattern() {
    if !have_vncsnapshot() && !missing("vncsnapshot", "apt-get install -y vncsnapshot") {
        return;
    }
    let f = fixture(640, 480);
    let server = start(loopback(), &f);
    let port = server.local_addr().unwrap().port();
    let out = tmp("plain.jpg");
    let res = snapshot(port, &out, None);
    assert!(
        res.status.success(),
        "vncsnapshot failed: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    check_jpeg(&out, 0, 640, 480);

    // The picture changes; a second snapshot shows the new one.
    f.ctl.bump();
    let res = snapshot(port, &out, None);
    assert!(res.status.success());
    check_jpeg(&out, 1, 640, 480);
}

#[test]
fn vncsnapshot_with_password() {
    if !have_vncsnapshot() && !missing("vncsnapshot", "apt-get install -y vncsnapshot") {
        return;
    }
    let f = fixture(320, 200);
    let mut cfg = loopback();
    cfg.password = Some("kite-pw".into());
    let server = start(cfg, &f);
    let port = server.local_addr().unwrap().port();
    let good = tmp("good.pw");
    write_vnc_passwd_file(&good, "kite-pw");
    let out = tmp("pw.jpg");
    let res = snapshot(port, &out, Some(&good));
    assert!(
        res.status.success(),
        "vncsnapshot failed: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    check_jpeg(&out, 0, 320, 200);

    let bad = tmp("bad.pw");
    write_vnc_passwd_file(&bad, "wrong");
    let out2 = tmp("never.jpg");
    let res = snapshot(port, &out2, Some(&bad));
    assert!(
        !res.status.success(),
        "a wrong password must not get a picture"
    );
    assert!(!out2.exists());
    // The server keeps serving after the failure.
    std::thread::sleep(Duration::from_millis(100));
    let res = snapshot(port, &out, Some(&good));
    assert!(res.status.success());
}
