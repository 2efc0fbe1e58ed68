//! A host tap interface (/dev/net/tun, IFF_TAP | IFF_NO_PI): one Ethernet
//! frame per read or write.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};

use thiserror::Error;

/// _IOW('T', 202, int)
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;

#[derive(Debug, Error)]
pub enum TapError {
    #[error("tap interface name '{0}' is empty or longer than 15 bytes")]
    BadName(String),
    #[error("cannot open /dev/net/tun for tap '{name}': {source}")]
    Open {
        name: String,
        source: std::io::Error,
    },
    #[error("cannot attach to tap interface '{name}' (does it exist, and may this user use it?): {source}")]
    Attach {
        name: String,
        source: std::io::Error,
    },
}

/// An open tap interface.
pub struct Tap {
    file: File,
}

#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: libc::c_short,
    pad: [u8; 22],
}

impl Tap {
    /// Attach to (or create, with CAP_NET_ADMIN) tap interface `name`.
    pub fn open(name: &str) -> Result<Tap, TapError> {
        if name.is_empty() || name.len() > 15 || name.contains('\0') {
            return Err(TapError::BadName(name.to_string()));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .map_err(|source| TapError::Open {
                name: name.to_string(),
                source,
            })?;
        let mut req = IfReq {
            name: [0; 16],
            flags: IFF_TAP | IFF_NO_PI,
            pad: [0; 22],
        };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: TUNSETIFF reads and writes one `struct ifreq` (40 bytes,
        // the layout of IfReq) at the pointer, which outlives the call.
        let r = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF as _, &mut req as *mut IfReq) };
        if r < 0 {
            return Err(TapError::Attach {
                name: name.to_string(),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(Tap { file })
    }

    /// Any descriptor that carries one frame per read/write (tests use a
    /// SOCK_SEQPACKET socket pair).
    pub fn from_fd(fd: OwnedFd) -> Tap {
        Tap {
            file: File::from(fd),
        }
    }

    /// Send one frame.
    pub fn send(&self, frame: &[u8]) -> std::io::Result<()> {
        (&self.file).write(frame).map(|_| ())
    }

    /// Receive one frame into `buf`; returns its length.
    pub fn recv(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        (&self.file).read(buf)
    }

    /// Wait up to `timeout_ms` for a frame; returns whether one is ready.
    pub fn wait_readable(&self, timeout_ms: i32) -> bool {
        let mut p = libc::pollfd {
            fd: self.file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one pollfd we own.
        let r = unsafe { libc::poll(&mut p, 1, timeout_ms) };
        r > 0 && p.revents & libc::POLLIN != 0
    }
}
