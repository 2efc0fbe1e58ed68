//! The glue between the QMP server (kite-qmp, which knows no machine) and
//! the machine's session handle (kite-machine's `MachineControl`, which
//! knows no protocol): `--qmp` sockets, the backend the server calls, and
//! machine events turned into QMP events.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kite_machine::snapshot::{IncomingSource, MigrationStatus, Migrations};
use kite_machine::{
    EngineChoice, MachineConfig, MachineControl, MachineEvent, RunStatus, ShutdownCause,
};
use kite_qmp::{
    BlockInfo, CpuInfo, ListenAddress, MigrationStats, QmpBackend, QmpEvent, QmpServer, RunState,
    ServerError, ShutdownReason, VersionInfo,
};

/// How long the last events may take to reach clients at exit.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

struct Backend {
    control: MachineControl,
    migrations: Migrations,
    blocks: Vec<BlockInfo>,
    kvm_present: bool,
    display: Option<kite_display::Display>,
    deferred: Arc<Mutex<Deferred>>,
}

/// `--incoming defer`: what `migrate-incoming` may still do.
enum Deferred {
    /// The machine was started some other way.
    No,
    /// Waiting: an opened source goes to the session through `tx`.
    Waiting {
        tx: SyncSender<IncomingSource>,
        limit: u64,
    },
    /// `migrate-incoming` was accepted once.
    Started,
}

/// A running QMP server bound to a session.
pub struct Qmp {
    server: QmpServer,
    deferred: Arc<Mutex<Deferred>>,
}

impl Qmp {
    /// Listen on every address and route `control`'s events to the clients;
    /// with any `wait=on` address, return only once a client connected.
    pub fn start(
        addrs: &[ListenAddress],
        config: &MachineConfig,
        control: &MachineControl,
    ) -> Result<Qmp, ServerError> {
        let blocks = config
            .disks
            .iter()
            .enumerate()
            .map(|(i, d)| BlockInfo {
                device: format!("virtio{i}"),
                file: d.path.display().to_string(),
                read_only: d.readonly,
                size: std::fs::metadata(&d.path).ok().map(|m| m.len()),
            })
            .collect();
        let kvm_present =
            config.engine != EngineChoice::Emu && std::path::Path::new("/dev/kvm").exists();
        let migrations = Migrations::new();
        let deferred = Arc::new(Mutex::new(Deferred::No));
        let server = QmpServer::new(Arc::new(Backend {
            control: control.clone(),
            migrations: migrations.clone(),
            blocks,
            kvm_present,
            display: config.display.as_ref().map(|d| d.display.clone()),
            deferred: deferred.clone(),
        }));
        for a in addrs {
            server.listen(a)?;
        }
        let s = server.clone();
        control.subscribe(move |ev| s.broadcast(qmp_event(*ev)));
        let s = server.clone();
        migrations.subscribe(move |st| s.broadcast(QmpEvent::Migration(st.name())));
        if addrs.iter().any(|a| a.wait) {
            server.wait_for_client();
        }
        Ok(Qmp { server, deferred })
    }

    /// `--incoming defer`: from now on `migrate-incoming` opens its URI
    /// (streams of at most `limit` bytes) and hands the source over here.
    pub fn defer_incoming(&self, limit: u64) -> Receiver<IncomingSource> {
        let (tx, rx) = sync_channel(1);
        *self.deferred.lock().unwrap_or_else(|e| e.into_inner()) = Deferred::Waiting { tx, limit };
        rx
    }

    /// Deliver what is queued (the SHUTDOWN event), close every client.
    pub fn finish(self) {
        self.server.shutdown(FLUSH_TIMEOUT);
    }
}

fn reason(c: ShutdownCause) -> ShutdownReason {
    match c {
        ShutdownCause::HostError => ShutdownReason::HostError,
        ShutdownCause::HostQmpQuit => ShutdownReason::HostQmpQuit,
        ShutdownCause::HostQmpSystemReset => ShutdownReason::HostQmpSystemReset,
        ShutdownCause::HostUi => ShutdownReason::HostUi,
        ShutdownCause::GuestShutdown => ShutdownReason::GuestShutdown,
        ShutdownCause::GuestReset => ShutdownReason::GuestReset,
    }
}

fn qmp_event(ev: MachineEvent) -> QmpEvent {
    match ev {
        MachineEvent::Stop => QmpEvent::Stop,
        MachineEvent::Resume => QmpEvent::Resume,
        MachineEvent::Reset(c) => QmpEvent::Reset(reason(c)),
        MachineEvent::Powerdown => QmpEvent::Powerdown,
        MachineEvent::Shutdown(c) => QmpEvent::Shutdown(reason(c)),
    }
}

impl QmpBackend for Backend {
    fn version(&self) -> VersionInfo {
        let mut v = env!("CARGO_PKG_VERSION")
            .split('.')
            .map(|p| p.parse::<u64>().unwrap_or(0));
        VersionInfo {
            major: v.next().unwrap_or(0),
            minor: v.next().unwrap_or(0),
            micro: v.next().unwrap_or(0),
            package: format!("kite {}", env!("CARGO_PKG_VERSION")),
        }
    }

    fn status(&self) -> RunState {
        match self.control.status() {
            RunStatus::Running => RunState::Running,
            RunStatus::Paused => RunState::Paused,
            RunStatus::Incoming => RunState::InMigrate,
            RunStatus::Shutdown => RunState::Shutdown,
            RunStatus::PostMigrate => RunState::PostMigrate,
        }
    }

    fn stop(&self) -> Result<(), String> {
        self.control.pause().map_err(|e| e.to_string())
    }

    fn cont(&self) -> Result<(), String> {
        self.control.resume().map_err(|e| e.to_string())
    }

    fn system_reset(&self) -> Result<(), String> {
        self.control.reset().map_err(|e| e.to_string())
    }

    fn system_powerdown(&self) -> Result<(), String> {
        self.control.power_button().map_err(|e| e.to_string())
    }

    fn quit(&self) {
        self.control.quit();
    }

    fn cpus(&self) -> Vec<CpuInfo> {
        self.control
            .vcpu_threads()
            .into_iter()
            .map(|t| CpuInfo {
                index: t.index,
                thread_id: t.tid,
            })
            .collect()
    }

    fn blocks(&self) -> Vec<BlockInfo> {
        self.blocks.clone()
    }

    fn kvm(&self) -> (bool, bool) {
        let enabled = self.control.engine().is_some_and(|k| k.name() == "kvm");
        (enabled, enabled || self.kvm_present)
    }

    fn name(&self) -> Option<String> {
        None
    }

    fn migrate(&self, uri: &str) -> Result<(), String> {
        self.migrations.start(&self.control, uri)
    }

    fn query_migrate(&self) -> Option<MigrationStats> {
        let m = self.migrations.info();
        if m.status == MigrationStatus::None {
            return None;
        }
        Some(MigrationStats {
            status: m.status.name(),
            transferred: m.transferred,
            remaining: m.total.saturating_sub(m.transferred),
            total: m.total,
            dirty_pages_rate: m.dirty_pages_rate,
            total_time_ms: m.total_time_ms,
            downtime_ms: m.downtime_ms,
            error: m.error,
        })
    }

    fn migrate_cancel(&self) {
        self.migrations.cancel();
    }

    fn migrate_incoming(&self, uri: &str) -> Result<(), String> {
        let mut d = self.deferred.lock().unwrap_or_else(|e| e.into_inner());
        match &*d {
            Deferred::No => Err("the machine was not started with --incoming defer".into()),
            Deferred::Started => Err("an incoming migration was started already".into()),
            Deferred::Waiting { tx, limit } => {
                let source = IncomingSource::open(uri, *limit, "migrate-incoming")
                    .map_err(|e| e.to_string())?;
                tx.send(source)
                    .map_err(|_| "the machine is shutting down".to_string())?;
                *d = Deferred::Started;
                Ok(())
            }
        }
    }

    fn screendump(&self, path: &str, png: bool) -> Result<(), String> {
        let display = self
            .display
            .as_ref()
            .ok_or("the machine has no display (see --display)")?;
        crate::save_screenshot(display, std::path::Path::new(path), png)
    }
}
