//! The firmware debug console (QEMU's isa-debugcon at port 0x402): bytes
//! SeaBIOS writes go to a log when one is set; reading the port gives 0xe9,
//! which tells SeaBIOS the port is there. Complete lines are also offered to
//! a watcher (the machine looks for SeaBIOS's "No bootable device").

use std::io::Write;

use crate::bus::PioDevice;

pub const DEBUG_CONSOLE_PORT: u16 = 0x402;
/// What a read returns: the port's presence signature.
const READBACK: u8 = 0xe9;
/// A line longer than this is handed over in pieces (bounded memory).
const MAX_LINE: usize = 512;

/// A line watcher: gets each complete line, without its newline.
pub type LineWatcher = Box<dyn FnMut(&str) + Send>;

pub struct DebugConsole {
    log: Option<Box<dyn Write + Send>>,
    watcher: Option<LineWatcher>,
    line: Vec<u8>,
    failed: bool,
}

impl DebugConsole {
    pub fn new(log: Option<Box<dyn Write + Send>>, watcher: Option<LineWatcher>) -> DebugConsole {
        DebugConsole {
            log,
            watcher,
            line: Vec::new(),
            failed: false,
        }
    }

    fn byte(&mut self, b: u8) {
        if let Some(w) = self.log.as_mut() {
            if !self.failed {
                if let Err(e) =
                    w.write_all(&[b])
                        .and_then(|_| if b == b'\n' { w.flush() } else { Ok(()) })
                {
                    log::warn!("firmware log: writing failed, the rest is dropped: {e}");
                    self.failed = true;
                }
            }
        }
        if self.watcher.is_none() {
            return;
        }
        if b == b'\n' || self.line.len() >= MAX_LINE {
            let text = String::from_utf8_lossy(&self.line).into_owned();
            self.line.clear();
            if let Some(w) = self.watcher.as_mut() {
                w(text.trim_end_matches('\r'));
            }
            if b == b'\n' {
                return;
            }
        }
        self.line.push(b);
    }
}

impl PioDevice for DebugConsole {
    fn read(&mut self, _offset: u16, data: &mut [u8]) {
        data.fill(READBACK);
    }

    fn write(&mut self, _offset: u16, data: &[u8]) {
        // One character per write, whatever the width.
        if let Some(&b) = data.first() {
            self.byte(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn logs_bytes_offers_lines_and_reads_back() {
        let out = Shared::default();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l = lines.clone();
        let mut d = DebugConsole::new(
            Some(Box::new(out.clone())),
            Some(Box::new(move |s: &str| {
                l.lock().unwrap().push(s.to_string())
            })),
        );
        let mut b = [0u8];
        d.read(0, &mut b);
        assert_eq!(b[0], 0xe9);
        for c in b"SeaBIOS\r\nNo bootable device.\n".iter() {
            d.write(0, &[*c]);
        }
        assert_eq!(&*out.0.lock().unwrap(), b"SeaBIOS\r\nNo bootable device.\n");
        assert_eq!(
            *lines.lock().unwrap(),
            vec!["SeaBIOS".to_string(), "No bootable device.".to_string()]
        );
        // A runaway line is bounded.
        for _ in 0..5000 {
            d.write(0, b"x");
        }
        assert!(d.line.len() <= MAX_LINE);
    }
}
