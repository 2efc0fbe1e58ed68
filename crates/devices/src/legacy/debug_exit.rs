//! isa-debug-exit: a guest write of `v` to the port asks the VMM to end with
//! status `(v << 1) | 1`, as QEMU's device of that name does. Test kernels use
//! it to report a result without any shutdown machinery.

use crate::bus::PioDevice;

/// The port QEMU's tests and Kite's built-in kernels use.
pub const DEBUG_EXIT_PORT: u16 = 0xf4;
pub const DEBUG_EXIT_LEN: u64 = 1;

/// The process exit status a guest write of `value` stands for (the low 8
/// bits are what a parent process sees).
pub fn exit_status(value: u32) -> i32 {
    (((value << 1) | 1) & 0xff) as i32
}

pub struct DebugExit {
    on_exit: Box<dyn FnMut(u32) + Send>,
}

impl DebugExit {
    /// `on_exit` receives the written value.
    pub fn new(on_exit: Box<dyn FnMut(u32) + Send>) -> Self {
        DebugExit { on_exit }
    }
}

impl PioDevice for DebugExit {
    fn read(&mut self, _offset: u16, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn write(&mut self, _offset: u16, data: &[u8]) {
        let mut v = [0u8; 4];
        let n = data.len().min(4);
        v[..n].copy_from_slice(&data[..n]);
        (self.on_exit)(u32::from_le_bytes(v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn write_reports_value() {
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        let mut d = DebugExit::new(Box::new(move |v| g.lock().unwrap().push(v)));
        d.write(0, &[0x10]);
        d.write(0, &[0x34, 0x12]);
        assert_eq!(*got.lock().unwrap(), vec![0x10, 0x1234]);
        assert_eq!(exit_status(0x10), 33);
        assert_eq!(exit_status(0), 1);
    }
}
