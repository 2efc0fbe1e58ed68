//! What a thread is for, as far as its system calls go.

/// Which engine a vCPU thread drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// /dev/kvm: the vCPU thread issues KVM_RUN and the vCPU ioctls.
    Kvm,
    /// The software CPU: no ioctls at all.
    Emu,
}

/// A thread's role; each has its own allow-list (see docs/SANDBOX.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The main thread after set-up: it rebuilds the machine on a reset
    /// (files, VM, memory, threads), so its list is the widest. Every thread
    /// it spawns afterwards (vCPUs) runs under it too.
    Main,
    /// A vCPU thread: exits dispatched to the devices.
    Vcpu(Engine),
    /// A virtio-net worker (TAP reader or user-mode network stack).
    Net,
    /// The thread reading the console's stdin.
    Console,
    /// A timer thread (the emu engine's interrupt timers, the RTC).
    Timer,
    /// VNC listener, client and reader threads.
    Vnc,
    /// QMP listener, reader and writer threads (commands run here), and the
    /// migration thread a `migrate` command starts: it writes snapshot
    /// files (create, fsync, rename), connects to a destination and reads
    /// the VM's irqchip and clock state.
    Qmp,
    /// The GDB stub's thread: serves its one connection; the vCPUs do the
    /// debugging work on their own threads.
    Gdb,
}

impl Role {
    /// The name used in reports and by `KITE_SECCOMP_SELFTEST`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Main => "main",
            Role::Vcpu(_) => "vcpu",
            Role::Net => "net",
            Role::Console => "console",
            Role::Timer => "timer",
            Role::Vnc => "vnc",
            Role::Qmp => "qmp",
            Role::Gdb => "gdb",
        }
    }
}
