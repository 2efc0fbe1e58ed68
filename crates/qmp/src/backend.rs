//! What the server asks of the machine it drives: a small trait with plain
//! types, implemented by whoever glues QMP to a machine. The server turns
//! these into QMP's JSON shapes.

/// The run state, as `query-status` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Running,
    Paused,
    /// Waiting for an incoming migration (`--incoming`).
    InMigrate,
    /// Paused after a completed migration (the destination runs the guest).
    PostMigrate,
    Shutdown,
}

impl RunState {
    pub fn name(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Paused => "paused",
            RunState::InMigrate => "inmigrate",
            RunState::PostMigrate => "postmigrate",
            RunState::Shutdown => "shutdown",
        }
    }
}

/// One vCPU for `query-cpus-fast`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuInfo {
    pub index: u32,
    /// The host thread running it.
    pub thread_id: i32,
}

/// One disk for `query-block`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockInfo {
    /// The device name (`virtio0`, ...).
    pub device: String,
    pub file: String,
    pub read_only: bool,
    /// Size in bytes, when known.
    pub size: Option<u64>,
}

/// The version `query-version` and the greeting report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    pub major: u64,
    pub minor: u64,
    pub micro: u64,
    /// Free text: which program this is.
    pub package: String,
}

/// An outgoing migration's state for `query-migrate` (QEMU's
/// MigrationInfo, by meaning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStats {
    /// QEMU's MigrationStatus name: setup, active, completed, failed,
    /// cancelling, cancelled.
    pub status: &'static str,
    /// Bytes of RAM and state sent, left to send, and the pass's total.
    pub transferred: u64,
    pub remaining: u64,
    pub total: u64,
    pub dirty_pages_rate: u64,
    /// Milliseconds since the start (the whole job once it ended).
    pub total_time_ms: u64,
    /// Milliseconds the guest stood still, once known.
    pub downtime_ms: Option<u64>,
    /// Why it failed.
    pub error: Option<String>,
}

/// The machine a QMP server drives. Calls come from client threads, several
/// at once; each returns when the request has taken effect (`stop` when no
/// vCPU runs) or was refused with a message for the client.
pub trait QmpBackend: Send + Sync {
    fn version(&self) -> VersionInfo;
    fn status(&self) -> RunState;
    fn stop(&self) -> Result<(), String>;
    fn cont(&self) -> Result<(), String>;
    fn system_reset(&self) -> Result<(), String>;
    fn system_powerdown(&self) -> Result<(), String>;
    /// End the VMM; called after the reply to `quit` was queued.
    fn quit(&self);
    fn cpus(&self) -> Vec<CpuInfo>;
    fn blocks(&self) -> Vec<BlockInfo>;
    /// (enabled, present): the VM runs on KVM; KVM is usable on this host.
    fn kvm(&self) -> (bool, bool);
    fn name(&self) -> Option<String>;
    /// Save the screen to `path` (PNG when `png`, else PPM as QEMU's
    /// default); an error when the machine has no display.
    fn screendump(&self, path: &str, png: bool) -> Result<(), String> {
        let _ = (path, png);
        Err("the machine has no display (see --display)".into())
    }
    /// Start migrating (snapshotting) the machine to `uri` (`file:PATH`,
    /// `tcp:HOST:PORT`); returns once started, progress through
    /// `query_migrate`.
    fn migrate(&self, uri: &str) -> Result<(), String> {
        let _ = uri;
        Err("this machine cannot migrate".into())
    }
    /// The current (or last) migration, None if there was none.
    fn query_migrate(&self) -> Option<MigrationStats> {
        None
    }
    /// Cancel the migration in progress, if any.
    fn migrate_cancel(&self) {}
    /// Start the incoming migration a machine started with `--incoming
    /// defer` waits for: open `uri` (a file, or listen on a TCP address)
    /// and return; the stream is read afterwards.
    fn migrate_incoming(&self, uri: &str) -> Result<(), String> {
        let _ = uri;
        Err("the machine was not started with --incoming defer".into())
    }
}
