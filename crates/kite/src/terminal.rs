//! Raw mode for a terminal on stdin while the guest owns the console: every
//! key goes to the guest (Ctrl-C too; Ctrl-A x quits), output keeps its
//! newline translation. The saved mode comes back when the guard drops, on
//! panic, and on a fatal signal.

use std::sync::OnceLock;

static SAVED: OnceLock<libc::termios> = OnceLock::new();

/// Restores the terminal when dropped.
pub struct RawMode(());

impl RawMode {
    /// Put stdin's terminal in raw mode; `None` if stdin is not a terminal
    /// (or the mode cannot be changed), in which case nothing changes.
    pub fn enter() -> Option<RawMode> {
        // SAFETY: isatty only inspects the descriptor.
        if unsafe { libc::isatty(libc::STDIN_FILENO) } != 1 {
            return None;
        }
        // SAFETY: termios is plain data; tcgetattr fills it or fails.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: valid descriptor and pointer.
        if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut t) } != 0 {
            return None;
        }
        let saved = *SAVED.get_or_init(|| t);
        let mut raw = saved;
        // SAFETY: cfmakeraw edits the struct it is given.
        unsafe { libc::cfmakeraw(&mut raw) };
        raw.c_oflag |= libc::OPOST | libc::ONLCR;
        install_restorers();
        // SAFETY: valid descriptor and pointer.
        if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &raw) } != 0 {
            return None;
        }
        Some(RawMode(()))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        restore();
    }
}

fn restore() {
    if let Some(t) = SAVED.get() {
        // SAFETY: valid descriptor and pointer; tcsetattr is async-signal-safe.
        unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, t) };
    }
}

extern "C" fn on_fatal_signal(sig: libc::c_int) {
    restore();
    // SAFETY: back to the default action, then re-raise so the process ends
    // by the signal as it would have without us.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

fn install_restorers() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        previous(info);
    }));
    for sig in [libc::SIGTERM, libc::SIGHUP, libc::SIGINT, libc::SIGQUIT] {
        // SAFETY: the handler only calls async-signal-safe functions.
        unsafe { libc::signal(sig, on_fatal_signal as *const () as libc::sighandler_t) };
    }
}
