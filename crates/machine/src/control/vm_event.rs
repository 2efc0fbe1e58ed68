//! `VmEvent`: something that ends one boot's run of the machine.

/// Something that ends a machine's run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmEvent {
    /// The guest wrote this value to the debug-exit port.
    DebugExit(u32),
    /// The guest asked for a reset (i8042, or the engine's reset event).
    Reset,
    /// The guest powered off.
    PowerOff,
    /// A vCPU triple-faulted; the message names its state.
    TripleFault(String),
    /// The engine could not go on (or a vCPU thread died).
    Failed(String),
    /// The user quit from the console (Ctrl-A x).
    Quit,
    /// A monitor asked for a reset (QMP `system_reset`).
    HostReset,
    /// A monitor asked Kite to quit (QMP `quit`).
    HostQuit,
    /// The firmware found nothing to boot (and the machine is set to exit).
    NoBootableDevice,
}
