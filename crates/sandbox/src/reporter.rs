//! The SIGSYS reporter: a forbidden call (SECCOMP_RET_TRAP) lands here; it
//! writes one line naming the thread and the call to stderr and ends the
//! process with [`crate::STATUS_FORBIDDEN_SYSCALL`]. Only async-signal-safe
//! calls (prctl PR_GET_NAME, write, _exit), all on every role's list.
//! It knows nothing of roles or filters.

use crate::syscall_names::SYSCALL_NAMES;
use crate::{SandboxError, STATUS_FORBIDDEN_SYSCALL};

/// `si_code` of a SIGSYS raised by seccomp.
const SYS_SECCOMP: i32 = 1;
/// Offsets in x86_64 `siginfo_t`: `si_code`, then the `_sigsys` union member
/// (`_call_addr` at 16, `_syscall` at 24).
const SI_CODE_OFFSET: usize = 8;
const SI_SYSCALL_OFFSET: usize = 24;

/// A fixed buffer a line is put together in, without allocating.
struct Line {
    buf: [u8; 160],
    len: usize,
}

impl Line {
    fn push(&mut self, s: &[u8]) {
        for &b in s {
            if self.len < self.buf.len() {
                self.buf[self.len] = b;
                self.len += 1;
            }
        }
    }

    fn push_number(&mut self, n: i64) {
        if n < 0 {
            self.push(b"-");
        }
        let mut v = n.unsigned_abs();
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }
}

/// The name of system call `nr` on x86_64, if it has one.
pub(crate) fn syscall_name(nr: i64) -> Option<&'static str> {
    let nr = u32::try_from(nr).ok()?;
    SYSCALL_NAMES
        .binary_search_by_key(&nr, |&(n, _)| n)
        .ok()
        .map(|i| SYSCALL_NAMES[i].1)
}

/// The report line for a forbidden call `nr` made by thread `thread`.
fn report(line: &mut Line, thread: &[u8], nr: Option<i64>) {
    line.push(b"kite: seccomp: thread ");
    line.push(thread);
    match nr {
        Some(nr) => {
            line.push(b" made a forbidden system call: ");
            line.push(syscall_name(nr).unwrap_or("unknown").as_bytes());
            line.push(b" (");
            line.push_number(nr);
            line.push(b")");
        }
        None => line.push(b" received SIGSYS"),
    }
    line.push(b"\n");
}

extern "C" fn on_sigsys(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    let mut name = [0u8; 17];
    // SAFETY: PR_GET_NAME writes at most 16 bytes into the buffer.
    unsafe { libc::prctl(libc::PR_GET_NAME, name.as_mut_ptr()) };
    let name_len = name.iter().position(|&b| b == 0).unwrap_or(16);
    let nr = if info.is_null() {
        None
    } else {
        // SAFETY: the kernel hands a full siginfo_t; the offsets are those of
        // the x86_64 layout (si_code, then _sigsys._syscall).
        let (code, nr) = unsafe {
            let base = info as *const u8;
            (
                (base.add(SI_CODE_OFFSET) as *const i32).read_unaligned(),
                (base.add(SI_SYSCALL_OFFSET) as *const i32).read_unaligned(),
            )
        };
        (code == SYS_SECCOMP).then_some(i64::from(nr))
    };
    let mut line = Line {
        buf: [0; 160],
        len: 0,
    };
    report(&mut line, &name[..name_len], nr);
    // SAFETY: write and _exit are async-signal-safe; the buffer is ours.
    unsafe {
        libc::write(libc::STDERR_FILENO, line.buf.as_ptr().cast(), line.len);
        libc::_exit(STATUS_FORBIDDEN_SYSCALL);
    }
}

/// Install the reporter for the whole process.
pub(crate) fn install() -> Result<(), SandboxError> {
    // SAFETY: a zeroed sigaction is valid; we set a SA_SIGINFO handler that
    // only makes async-signal-safe calls, and an empty mask.
    let rc = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigsys as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGSYS, &action, std::ptr::null_mut())
    };
    if rc != 0 {
        return Err(SandboxError::Reporter(std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_for(thread: &[u8], nr: Option<i64>) -> String {
        let mut line = Line {
            buf: [0; 160],
            len: 0,
        };
        report(&mut line, thread, nr);
        String::from_utf8(line.buf[..line.len].to_vec()).expect("ascii")
    }

    #[test]
    fn names_the_thread_and_the_call() {
        assert_eq!(
            line_for(b"kite-vcpu0", Some(101)),
            "kite: seccomp: thread kite-vcpu0 made a forbidden system call: ptrace (101)\n"
        );
        assert_eq!(
            line_for(b"kite-rtc", Some(59)),
            "kite: seccomp: thread kite-rtc made a forbidden system call: execve (59)\n"
        );
        assert_eq!(
            line_for(b"kite", Some(9999)),
            "kite: seccomp: thread kite made a forbidden system call: unknown (9999)\n"
        );
        assert_eq!(
            line_for(b"x", None),
            "kite: seccomp: thread x received SIGSYS\n"
        );
    }

    #[test]
    fn the_table_is_sorted_and_matches_libc() {
        assert!(SYSCALL_NAMES.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(syscall_name(libc::SYS_openat), Some("openat"));
        assert_eq!(syscall_name(libc::SYS_clone3), Some("clone3"));
        assert_eq!(syscall_name(libc::SYS_socket), Some("socket"));
        assert_eq!(syscall_name(-1), None);
    }

    #[test]
    fn a_long_line_is_cut_not_overrun() {
        let long = [b'a'; 400];
        let s = line_for(&long, Some(1));
        assert_eq!(s.len(), 160);
    }
}
