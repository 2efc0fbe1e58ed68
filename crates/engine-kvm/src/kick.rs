//! Kicking a running vCPU out of KVM_RUN from another thread.
//!
//! A kick sets `immediate_exit` in the vCPU's `kvm_run` page (so a KVM_RUN that
//! is about to start returns at once) and sends a real-time signal to the thread
//! inside KVM_RUN (so a running one returns with EINTR). The signal's handler
//! does nothing; it is installed once per process without SA_RESTART.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard, Once};

use kite_hypervisor::VcpuKick;

/// The signal that kicks vCPU threads.
pub(crate) fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN()
}

extern "C" fn ignore_signal(_: libc::c_int) {}

/// Install the no-op handler for the kick signal, once per process.
pub(crate) fn install_kick_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: a zeroed sigaction is a valid starting point; we fill the
        // handler and an empty mask, and no SA_RESTART so KVM_RUN returns EINTR.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = ignore_signal as *const () as usize;
            action.sa_flags = 0;
            libc::sigemptyset(&mut action.sa_mask);
            // If this fails the kick still sets immediate_exit; a vCPU busy in
            // guest mode would then only leave at its next exit.
            libc::sigaction(kick_signal(), &action, std::ptr::null_mut());
        }
    });
}

struct KickTarget {
    /// `&kvm_run.immediate_exit`, null once the vCPU is dropped.
    immediate_exit: *const AtomicU8,
    /// The thread inside `Vcpu::run`, if any.
    thread: Option<libc::pthread_t>,
}

/// Shared between a `KvmVcpu` and its kick handles.
pub(crate) struct KickState {
    target: Mutex<KickTarget>,
}

// SAFETY: the raw pointer is only dereferenced under the mutex, while the vCPU
// (which owns the mapping it points into) is alive: `detach` nulls it first.
unsafe impl Send for KickState {}
// SAFETY: as above; all access goes through the mutex.
unsafe impl Sync for KickState {}

impl KickState {
    /// `immediate_exit` must point into a `kvm_run` mapping that stays valid
    /// until `detach` is called.
    pub(crate) fn new(immediate_exit: *mut u8) -> Self {
        install_kick_handler();
        KickState {
            target: Mutex::new(KickTarget {
                immediate_exit: immediate_exit as *const AtomicU8,
                thread: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, KickTarget> {
        self.target
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The calling thread is about to enter KVM_RUN.
    pub(crate) fn enter_run(&self) {
        // SAFETY: pthread_self has no preconditions.
        self.lock().thread = Some(unsafe { libc::pthread_self() });
    }

    /// The calling thread has left KVM_RUN.
    pub(crate) fn leave_run(&self) {
        self.lock().thread = None;
    }

    /// Clear `immediate_exit` after the vCPU reported `Interrupted`.
    pub(crate) fn clear(&self) {
        let target = self.lock();
        if !target.immediate_exit.is_null() {
            // SAFETY: non-null means the vCPU and its kvm_run mapping are alive.
            unsafe { (*target.immediate_exit).store(0, Ordering::SeqCst) };
        }
    }

    /// The vCPU is going away: later kicks do nothing.
    pub(crate) fn detach(&self) {
        let mut target = self.lock();
        target.immediate_exit = std::ptr::null();
        target.thread = None;
    }
}

impl VcpuKick for KickState {
    fn kick(&self) {
        let target = self.lock();
        if target.immediate_exit.is_null() {
            return;
        }
        // SAFETY: non-null means the vCPU and its kvm_run mapping are alive
        // (detach takes this lock before the mapping goes away).
        unsafe { (*target.immediate_exit).store(1, Ordering::SeqCst) };
        if let Some(thread) = target.thread {
            // SAFETY: `thread` is inside `Vcpu::run` (it clears the field under
            // this lock before returning), so it is a live thread.
            unsafe { libc::pthread_kill(thread, kick_signal()) };
        }
    }
}
