//! kite-sandbox: Kite's seccomp-BPF sandbox. Each thread installs the
//! allow-list of its role ([`Role`]) as its first statement
//! ([`thread_started`]); the main thread installs its own once the machine
//! is built ([`apply`]). A forbidden call is reported by name on stderr and
//! ends the process with [`STATUS_FORBIDDEN_SYSCALL`] (or, under
//! [`Mode::Log`], is allowed and logged by the kernel).
//!
//! Nothing happens unless the program calls [`enable`] first (the kite
//! binary does, from `--seccomp`), so libraries can mark their threads'
//! roles and still run unfiltered in tests. It knows nothing of devices,
//! engines or machines beyond the system calls they make.
//!
//! Filters stack: a thread spawned after its parent installed a filter runs
//! under both, so the parent's list must allow what the child needs.
//! docs/SANDBOX.md lists the roles and how to find a missing entry.

mod error;
pub mod listen;
mod mode;
mod reporter;
mod role;
mod rules;
mod syscall_names;

use std::cell::Cell;
use std::sync::OnceLock;

pub use error::SandboxError;
pub use mode::{BadMode, Mode};
pub use role::{Engine, Role};

/// The exit status after a forbidden system call (even, so it never
/// collides with a guest's debug-exit status, which is always odd).
pub const STATUS_FORBIDDEN_SYSCALL: i32 = 6;

/// The exit status when a thread cannot install its filter.
pub const STATUS_SANDBOX_FAILED: i32 = 1;

/// The environment variable naming a role whose thread makes one forbidden
/// call (ptrace) right after its filter is on: the tests' proof that the
/// filter and the report work. Not for users.
pub const SELFTEST_ENV: &str = "KITE_SECCOMP_SELFTEST";

struct Settings {
    mode: Mode,
    selftest: Option<String>,
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

thread_local! {
    static APPLIED: Cell<bool> = const { Cell::new(false) };
}

static CODEGEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Let the filters installed from now on allow what the emu engine's
/// code-generating tier needs: mprotect to exactly PROT_READ|PROT_EXEC on
/// the main thread (whose filter bounds the vCPU threads) and the emu vCPU
/// threads. Call it before the main thread's [`apply`], only when that tier
/// is on; without it no thread may make memory executable.
pub fn allow_emu_translations() {
    CODEGEN.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Turn the sandbox on for this process (call it first, before any thread
/// is spawned): installs the SIGSYS reporter; filters come with [`apply`].
/// `Mode::Off` installs nothing and makes [`apply`] a no-op. Only the
/// first call counts.
pub fn enable(mode: Mode) -> Result<(), SandboxError> {
    if SETTINGS.get().is_some() {
        return Ok(());
    }
    if mode != Mode::Off {
        reporter::install()?;
    }
    let _ = SETTINGS.set(Settings {
        mode,
        selftest: std::env::var(SELFTEST_ENV).ok(),
    });
    Ok(())
}

/// The mode in force (`Off` until [`enable`]).
pub fn mode() -> Mode {
    SETTINGS.get().map_or(Mode::Off, |s| s.mode)
}

/// Install `role`'s filter on the calling thread, once per thread (later
/// calls on the same thread do nothing); nothing unless [`enable`] was
/// called with `On` or `Log`.
pub fn apply(role: Role) -> Result<(), SandboxError> {
    let Some(settings) = SETTINGS.get() else {
        return Ok(());
    };
    if settings.mode == Mode::Off || APPLIED.get() {
        return Ok(());
    }
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() } as u64;
    let codegen = CODEGEN.load(std::sync::atomic::Ordering::Relaxed);
    let program = rules::program(role, settings.mode, pid, codegen)?;
    seccompiler::apply_filter(&program).map_err(|source| SandboxError::Install {
        role: role.name(),
        source,
    })?;
    APPLIED.set(true);
    if settings.selftest.as_deref() == Some(role.name()) {
        forbidden_call();
    }
    Ok(())
}

/// [`apply`] as a spawned thread's first statement: a filter that cannot be
/// installed ends the process (the sandbox fails closed).
pub fn thread_started(role: Role) {
    if let Err(e) = apply(role) {
        eprintln!("kite: {e} (--seccomp off runs without the sandbox)");
        // SAFETY: _exit ends the process at once; nothing is left half-done
        // that the exit status does not report.
        unsafe { libc::_exit(STATUS_SANDBOX_FAILED) };
    }
}

/// A call no role allows, harmless if it were let through (log mode):
/// ptrace(PTRACE_PEEKUSER) on pid 0, which does not exist.
fn forbidden_call() {
    // SAFETY: a ptrace request on a process that does not exist only fails.
    unsafe { libc::syscall(libc::SYS_ptrace, libc::PTRACE_PEEKUSER, 0, 0, 0) };
}
