//! The guest console on the host side: where COM1's output goes, and a stdin
//! reader that feeds COM1's input, with QEMU's Ctrl-A escapes (Ctrl-A x
//! quits, Ctrl-A Ctrl-A sends a Ctrl-A, Ctrl-A h lists them).
//!
//! The console outlives reboots: each new board attaches its UART to it.

use std::fs::File;
use std::io::{Read, Write};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kite_devices::bus::lock;
use kite_devices::legacy::uart16550::SerialOut;
use kite_devices::legacy::Uart16550;

use crate::config::SerialMode;
use crate::control::VmEvent;
use crate::error::MachineError;

const CTRL_A: u8 = 0x01;

/// Host side of the guest console.
pub struct Console {
    out: OutTarget,
    /// The UART that receives stdin, once a board is attached.
    input: Arc<Mutex<Option<Arc<Mutex<Uart16550>>>>>,
}

#[derive(Clone)]
enum OutTarget {
    Stdout,
    Sink,
    File(Arc<Mutex<File>>),
}

impl Console {
    /// Open the console for `mode`. For `Stdio`, a thread starts reading
    /// stdin; Ctrl-A x sends `VmEvent::Quit` on `events`.
    pub fn open(mode: &SerialMode, events: Sender<VmEvent>) -> Result<Console, MachineError> {
        let input = Arc::new(Mutex::new(None));
        let out = match mode {
            SerialMode::Stdio => {
                let target = input.clone();
                std::thread::Builder::new()
                    .name("kite-stdin".into())
                    .spawn(move || {
                        kite_sandbox::thread_started(kite_sandbox::Role::Console);
                        read_stdin(target, events)
                    })
                    .map_err(MachineError::Thread)?;
                OutTarget::Stdout
            }
            SerialMode::None => OutTarget::Sink,
            SerialMode::File(path) => {
                let f = File::create(path).map_err(|e| {
                    MachineError::Config(format!("--serial file={}: {e}", path.display()))
                })?;
                OutTarget::File(Arc::new(Mutex::new(f)))
            }
        };
        Ok(Console { out, input })
    }

    /// A writer for a new UART's output.
    pub fn writer(&self) -> SerialOut {
        Box::new(ConsoleWriter(self.out.clone()))
    }

    /// Route stdin to `uart` (replacing the previous board's).
    pub fn attach(&self, uart: Arc<Mutex<Uart16550>>) {
        *lock(&self.input) = Some(uart);
    }
}

struct ConsoleWriter(OutTarget);

impl Write for ConsoleWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &self.0 {
            OutTarget::Stdout => {
                let mut o = std::io::stdout().lock();
                o.write_all(buf)?;
                o.flush()?;
            }
            OutTarget::Sink => {}
            OutTarget::File(f) => lock(f).write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &self.0 {
            OutTarget::Stdout => std::io::stdout().flush(),
            OutTarget::Sink => Ok(()),
            OutTarget::File(f) => lock(f).flush(),
        }
    }
}

/// What the escape decoder makes of input.
#[derive(Debug, Default)]
pub struct EscapeDecoder {
    after_ctrl_a: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Bytes for the guest.
    Guest(Vec<u8>),
    Quit,
    Help,
}

impl EscapeDecoder {
    /// Split `input` into guest bytes and escape actions, in order.
    pub fn feed(&mut self, input: &[u8]) -> Vec<Decoded> {
        let mut out = Vec::new();
        let mut guest = Vec::new();
        for &b in input {
            if self.after_ctrl_a {
                self.after_ctrl_a = false;
                match b {
                    b'x' | b'X' => {
                        if !guest.is_empty() {
                            out.push(Decoded::Guest(std::mem::take(&mut guest)));
                        }
                        out.push(Decoded::Quit);
                        return out;
                    }
                    CTRL_A => guest.push(CTRL_A),
                    b'h' | b'H' | b'?' => {
                        if !guest.is_empty() {
                            out.push(Decoded::Guest(std::mem::take(&mut guest)));
                        }
                        out.push(Decoded::Help);
                    }
                    _ => {}
                }
            } else if b == CTRL_A {
                self.after_ctrl_a = true;
            } else {
                guest.push(b);
            }
        }
        if !guest.is_empty() {
            out.push(Decoded::Guest(guest));
        }
        out
    }
}

fn read_stdin(target: Arc<Mutex<Option<Arc<Mutex<Uart16550>>>>>, events: Sender<VmEvent>) {
    let mut stdin = std::io::stdin().lock();
    let mut buf = [0u8; 256];
    let mut dec = EscapeDecoder::default();
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        for d in dec.feed(&buf[..n]) {
            match d {
                Decoded::Quit => {
                    let _ = events.send(VmEvent::Quit);
                    return;
                }
                Decoded::Help => {
                    eprint!("\r\nC-a h    print this help\r\nC-a x    exit kite\r\nC-a C-a  send C-a\r\n");
                }
                Decoded::Guest(bytes) => feed_guest(&target, &bytes),
            }
        }
    }
}

/// Offer `bytes` to the attached UART, waiting while its FIFO is full.
fn feed_guest(target: &Mutex<Option<Arc<Mutex<Uart16550>>>>, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        let uart = lock(target).clone();
        let taken = match uart {
            Some(u) => lock(&u).enqueue_input(bytes),
            None => 0,
        };
        bytes = &bytes[taken..];
        if !bytes.is_empty() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctrl_a_escapes() {
        let mut d = EscapeDecoder::default();
        assert_eq!(d.feed(b"ab"), vec![Decoded::Guest(b"ab".to_vec())]);
        assert_eq!(d.feed(b"c\x01"), vec![Decoded::Guest(b"c".to_vec())]);
        // The escape spans reads.
        assert_eq!(d.feed(b"\x01z"), vec![Decoded::Guest(b"\x01z".to_vec())]);
        assert_eq!(d.feed(b"\x01qy"), vec![Decoded::Guest(b"y".to_vec())]);
        assert_eq!(
            d.feed(b"k\x01hm"),
            vec![
                Decoded::Guest(b"k".to_vec()),
                Decoded::Help,
                Decoded::Guest(b"m".to_vec())
            ]
        );
        assert_eq!(
            d.feed(b"q\x01xrest"),
            vec![Decoded::Guest(b"q".to_vec()), Decoded::Quit]
        );
    }

    #[test]
    fn file_console_writes_through() {
        let path = std::env::temp_dir().join(format!("kite-console-{}", std::process::id()));
        let (tx, _rx) = std::sync::mpsc::channel();
        let c = Console::open(&SerialMode::File(path.clone()), tx).unwrap();
        let mut w = c.writer();
        w.write_all(b"guest says hi").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"guest says hi");
        std::fs::remove_file(&path).unwrap();
        let (tx, _rx) = std::sync::mpsc::channel();
        let err = Console::open(&SerialMode::File("/nonexistent/dir/out".into()), tx)
            .err()
            .unwrap();
        assert!(err.is_user_error());
        assert!(err.to_string().contains("/nonexistent/dir/out"));
    }
}
