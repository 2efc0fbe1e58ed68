//! Outgoing snapshots while the session runs (QMP `migrate`): one job at a
//! time on its own thread (`kite-migrate`), pausing the machine, writing the
//! stream to a file (through a temporary file renamed at the end, so a
//! failed write never leaves a half file under the name) or a TCP peer,
//! then resuming (a file) or ending the session (a peer took the machine
//! over). Its status, byte counts and times are what `query-migrate`
//! reports; `cancel` stops a job between pages.
//!
//! And the incoming side (`--incoming`): the whole stream read into memory
//! (a file, or the first peer on a TCP port) and checked before a machine
//! is built from it.
//!
//! It must not know the QMP protocol.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kite_devices::bus::lock;

use super::format::StreamWriter;
use super::machine_state::{Progress, SavedRun, SentPages};
use super::uri::MigrationUri;
use super::SnapshotError;
use crate::control::{MachineControl, RunStatus};

/// A job's state, as QEMU's MigrationStatus names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationStatus {
    None,
    Setup,
    Active,
    Completed,
    Failed,
    Cancelling,
    Cancelled,
}

impl MigrationStatus {
    pub fn name(self) -> &'static str {
        match self {
            MigrationStatus::None => "none",
            MigrationStatus::Setup => "setup",
            MigrationStatus::Active => "active",
            MigrationStatus::Completed => "completed",
            MigrationStatus::Failed => "failed",
            MigrationStatus::Cancelling => "cancelling",
            MigrationStatus::Cancelled => "cancelled",
        }
    }

    fn finished(self) -> bool {
        matches!(
            self,
            MigrationStatus::None
                | MigrationStatus::Completed
                | MigrationStatus::Failed
                | MigrationStatus::Cancelled
        )
    }
}

/// What `query-migrate` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationInfo {
    pub status: MigrationStatus,
    /// Bytes of state sent so far, and the total of this pass.
    pub transferred: u64,
    pub total: u64,
    /// Pages per second the guest dirtied during the last pass (0 when the
    /// machine was paused for the whole write).
    pub dirty_pages_rate: u64,
    /// Milliseconds from the start (or the whole job, once finished).
    pub total_time_ms: u64,
    /// Milliseconds the guest was stopped for the migration.
    pub downtime_ms: Option<u64>,
    pub error: Option<String>,
}

#[derive(Default)]
struct Job {
    status: Option<MigrationStatus>,
    started: Option<Instant>,
    ended: Option<Instant>,
    downtime: Option<Duration>,
    error: Option<String>,
}

type Listener = Box<dyn Fn(MigrationStatus) + Send + Sync>;

#[derive(Default)]
struct Shared {
    job: Mutex<Job>,
    transferred: AtomicU64,
    total: AtomicU64,
    dirty_rate: AtomicU64,
    cancel: AtomicBool,
    listeners: Mutex<Vec<Listener>>,
}

impl Progress for Shared {
    fn set_total(&self, bytes: u64) {
        self.total.store(bytes, Ordering::Relaxed);
    }
    fn add_total(&self, bytes: u64) {
        self.total.fetch_add(bytes, Ordering::Relaxed);
    }
    fn dirty_rate(&self, pages_per_sec: u64) {
        self.dirty_rate.store(pages_per_sec, Ordering::Relaxed);
    }
    fn add(&self, bytes: u64) {
        self.transferred.fetch_add(bytes, Ordering::Relaxed);
    }
    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

/// The session's outgoing migrations; clones share them.
#[derive(Clone, Default)]
pub struct Migrations {
    shared: Arc<Shared>,
}

impl Migrations {
    pub fn new() -> Migrations {
        Migrations::default()
    }

    /// Call `f` on every status change (MIGRATION events).
    pub fn subscribe(&self, f: impl Fn(MigrationStatus) + Send + Sync + 'static) {
        lock(&self.shared.listeners).push(Box::new(f));
    }

    fn set_status(&self, s: MigrationStatus) {
        lock(&self.shared.job).status = Some(s);
        for l in lock(&self.shared.listeners).iter() {
            l(s);
        }
    }

    pub fn info(&self) -> MigrationInfo {
        let job = lock(&self.shared.job);
        let total_time_ms = match (job.started, job.ended) {
            (Some(s), Some(e)) => e.duration_since(s).as_millis() as u64,
            (Some(s), None) => s.elapsed().as_millis() as u64,
            _ => 0,
        };
        MigrationInfo {
            status: job.status.unwrap_or(MigrationStatus::None),
            transferred: self.shared.transferred.load(Ordering::Relaxed),
            total: self.shared.total.load(Ordering::Relaxed),
            dirty_pages_rate: self.shared.dirty_rate.load(Ordering::Relaxed),
            total_time_ms,
            downtime_ms: job.downtime.map(|d| d.as_millis() as u64),
            error: job.error.clone(),
        }
    }

    /// Start writing the session's machine to `uri`; returns at once (the
    /// job runs on its own thread). Refused while another job runs.
    pub fn start(&self, session: &MachineControl, uri: &str) -> Result<(), String> {
        let uri = MigrationUri::parse(uri)?;
        {
            let mut job = lock(&self.shared.job);
            if !job.status.unwrap_or(MigrationStatus::None).finished() {
                return Err("a migration is already in progress".into());
            }
            *job = Job {
                status: Some(MigrationStatus::Setup),
                started: Some(Instant::now()),
                ..Job::default()
            };
        }
        self.shared.transferred.store(0, Ordering::Relaxed);
        self.shared.total.store(0, Ordering::Relaxed);
        self.shared.dirty_rate.store(0, Ordering::Relaxed);
        self.shared.cancel.store(false, Ordering::Relaxed);
        self.set_status(MigrationStatus::Setup);
        let me = self.clone();
        let session = session.clone();
        std::thread::Builder::new()
            .name("kite-migrate".into())
            .spawn(move || me.run(&session, &uri))
            .map(|_| ())
            .map_err(|e| {
                self.set_status(MigrationStatus::Failed);
                format!("cannot start the migration thread: {e}")
            })
    }

    /// Stop a running job (it ends as `cancelled`; the machine goes on).
    pub fn cancel(&self) {
        let active = !lock(&self.shared.job)
            .status
            .unwrap_or(MigrationStatus::None)
            .finished();
        if active {
            self.shared.cancel.store(true, Ordering::Relaxed);
            self.set_status(MigrationStatus::Cancelling);
        }
    }

    fn run(&self, session: &MachineControl, uri: &MigrationUri) {
        let result = self.write(session, uri);
        let status = match &result {
            Ok(()) => MigrationStatus::Completed,
            Err(_) if self.shared.cancelled() => MigrationStatus::Cancelled,
            Err(_) => MigrationStatus::Failed,
        };
        {
            let mut job = lock(&self.shared.job);
            job.ended = Some(Instant::now());
            if let Err(e) = &result {
                log::warn!("migration to {uri} failed: {e}");
                job.error = Some(e.clone());
            }
        }
        // A peer has the machine now: this one stays paused, its disk
        // images let go for the peer (which waits for them), until the
        // management quits it (or `cont`s it, taking them back), as QEMU's
        // source does.
        if status == MigrationStatus::Completed && matches!(uri, MigrationUri::Tcp(..)) {
            if let Err(e) = session.handed_over() {
                log::warn!("after migrating to {uri}: {e}");
            }
        }
        self.set_status(status);
    }

    fn write(&self, session: &MachineControl, uri: &MigrationUri) -> Result<(), String> {
        // Connect before pausing: an unreachable peer costs the guest nothing.
        let mut sink = match uri {
            MigrationUri::File(path) => Sink::File(TempFile::create(path)?),
            MigrationUri::Tcp(host, port) => {
                let s = TcpStream::connect((host.as_str(), *port))
                    .map_err(|e| format!("{uri}: cannot connect: {e}"))?;
                let _ = s.set_nodelay(true);
                Sink::Tcp(BufWriter::with_capacity(1 << 20, s))
            }
        };
        self.set_status(MigrationStatus::Active);
        if let Sink::Tcp(t) = &mut sink {
            if session.status() == RunStatus::Running {
                let result = self.write_live(session, t);
                let handed_over = result.is_ok();
                let finished = result.and_then(|()| match sink {
                    Sink::Tcp(t) => await_verdict(t, uri),
                    Sink::File(_) => Ok(()),
                });
                if !handed_over || finished.is_err() {
                    if let Some(m) = session.machine() {
                        let _ = m.log_ram_writes(false);
                    }
                    let _ = session.resume();
                }
                return finished;
            }
        }
        let captured = session.capture().map_err(|e| e.to_string())?;
        let paused_at = Instant::now();
        let out: &mut dyn std::io::Write = match &mut sink {
            Sink::File(f) => f,
            Sink::Tcp(t) => t,
        };
        let written = captured.machine.write(
            out,
            &captured.vcpus,
            SavedRun {
                running: captured.was_running,
            },
            &*self.shared,
        );
        let finished = written
            .map_err(|e: SnapshotError| e.to_string())
            .and_then(|_| match sink {
                Sink::File(f) => f.commit(),
                Sink::Tcp(t) => await_verdict(t, uri),
            });
        // A file snapshot (or a failed migration) leaves the machine as it
        // was; after a completed TCP migration the peer runs it.
        let handed_over = finished.is_ok() && matches!(uri, MigrationUri::Tcp(..));
        if captured.was_running && !handed_over {
            let _ = session.resume();
        }
        lock(&self.shared.job).downtime = Some(paused_at.elapsed());
        finished
    }
}

/// Pre-copy rounds at most, and the dirty pages few enough to stop at.
const MAX_ROUNDS: usize = 8;
const STOP_PAGES: usize = 256;

impl Migrations {
    /// Live migration: RAM while the guest runs (then again the pages it
    /// dirtied, round after round, until few are left), then pause, the
    /// last dirty pages (the engine's log, and any page whose contents
    /// changed behind it, as device DMA does), vCPU and device state. The
    /// machine stays paused on success (the peer runs it now); on failure
    /// the caller resumes it.
    fn write_live(
        &self,
        session: &MachineControl,
        out: &mut BufWriter<TcpStream>,
    ) -> Result<(), String> {
        let machine = session.machine().ok_or("no machine is running")?;
        let p: &dyn Progress = &*self.shared;
        machine.log_ram_writes(true).map_err(|e| e.to_string())?;
        let _ = machine.dirty_pages(None);
        let mut w = StreamWriter::new(&mut *out, &machine.header()).map_err(|e| e.to_string())?;
        let mut sent = SentPages::default();
        machine
            .write_ram(&mut w, p, Some(&mut sent))
            .map_err(|e| e.to_string())?;
        let mut round_start = Instant::now();
        // Pages taken from the log but not sent yet.
        let mut pending: Vec<Vec<u64>> = Vec::new();
        for _ in 0..MAX_ROUNDS {
            let dirty = machine.dirty_pages(None);
            let n: usize = dirty.iter().map(Vec::len).sum();
            let secs = round_start.elapsed().as_secs_f64().max(1e-3);
            p.dirty_rate((n as f64 / secs) as u64);
            round_start = Instant::now();
            if n <= STOP_PAGES {
                // Few enough: these go with the final pass. (The log has
                // let go of them, and their check values may match again
                // although what was sent differs: a lock word taken while
                // the page went out and released since.)
                pending = dirty;
                break;
            }
            machine
                .write_delta(&mut w, &dirty, p, Some(&mut sent))
                .map_err(|e| e.to_string())?;
        }
        let captured = session.capture().map_err(|e| e.to_string())?;
        let paused_at = Instant::now();
        let mut last = machine.dirty_pages(Some(&sent));
        for (range, pages) in last.iter_mut().zip(pending) {
            range.extend(pages);
            range.sort_unstable();
            range.dedup();
        }
        let result = machine
            .write_delta(&mut w, &last, p, None)
            .and_then(|()| {
                machine.write_state(
                    &mut w,
                    &captured.vcpus,
                    SavedRun {
                        running: captured.was_running,
                    },
                    p,
                )
            })
            .map_err(|e| e.to_string())
            .and_then(|()| w.finish().map(|_| ()).map_err(|e| e.to_string()));
        lock(&self.shared.job).downtime = Some(paused_at.elapsed());
        result
    }
}

/// What a destination answers a stream it accepted.
const ACCEPTED: &[u8] = b"OK\n";
/// How long a source waits for the destination's verdict.
const VERDICT_TIMEOUT: Duration = Duration::from_secs(60);

/// Flush and half-close the stream, then read the destination's verdict:
/// the migration is done only once the peer has checked the whole stream.
fn await_verdict(t: BufWriter<TcpStream>, uri: &MigrationUri) -> Result<(), String> {
    let s = t.into_inner().map_err(|e| format!("{uri}: {e}"))?;
    s.shutdown(std::net::Shutdown::Write)
        .map_err(|e| format!("{uri}: {e}"))?;
    let _ = s.set_read_timeout(Some(VERDICT_TIMEOUT));
    let mut reply = Vec::new();
    (&s).take(4096)
        .read_to_end(&mut reply)
        .map_err(|e| format!("{uri}: no answer from the destination: {e}"))?;
    if reply == ACCEPTED {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&reply);
    match text.strip_prefix("ERR ") {
        Some(why) => Err(format!(
            "{uri}: the destination refused the stream: {}",
            why.trim()
        )),
        None => Err(format!(
            "{uri}: the destination hung up before accepting the stream"
        )),
    }
}

enum Sink {
    File(TempFile),
    Tcp(BufWriter<TcpStream>),
}

/// A file written under a temporary name, renamed over `path` on commit
/// (and removed if never committed).
struct TempFile {
    out: Option<BufWriter<File>>,
    tmp: std::path::PathBuf,
    path: std::path::PathBuf,
}

impl TempFile {
    fn create(path: &std::path::Path) -> Result<TempFile, String> {
        let mut name = path.as_os_str().to_owned();
        name.push(".part");
        let tmp = std::path::PathBuf::from(name);
        let f = File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
        Ok(TempFile {
            out: Some(BufWriter::with_capacity(1 << 20, f)),
            tmp,
            path: path.to_path_buf(),
        })
    }

    fn commit(mut self) -> Result<(), String> {
        let out = self.out.take().ok_or("the snapshot file is closed")?;
        let f = out
            .into_inner()
            .map_err(|e| format!("{}: {e}", self.tmp.display()))?;
        f.sync_all()
            .map_err(|e| format!("{}: {e}", self.tmp.display()))?;
        std::fs::rename(&self.tmp, &self.path).map_err(|e| format!("{}: {e}", self.path.display()))
    }
}

impl std::io::Write for TempFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.out.as_mut() {
            Some(o) => o.write(buf),
            None => Err(std::io::Error::other("closed")),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self.out.as_mut() {
            Some(o) => o.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        // A committed file was renamed away; anything else is a failed write.
        if self.tmp.exists() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// A snapshot to start from, read whole.
pub struct Incoming {
    pub bytes: Vec<u8>,
    /// Where it came from, for messages.
    pub source: String,
    /// How long to wait for a disk image another process still locks: a
    /// live migration's source lets go of its images once it has our
    /// verdict, so its destination waits for them; a file waits for no one.
    pub disk_wait: Duration,
}

/// How long a destination waits for its source to let go of the disks.
pub const DISK_HANDOVER_WAIT: Duration = Duration::from_secs(10);

/// Why an incoming stream could not be had.
#[derive(Debug, thiserror::Error)]
pub enum IncomingError {
    /// The user's file or address is at fault.
    #[error("{0}")]
    Input(String),
    /// The peer went away mid-stream.
    #[error("{0}")]
    Stream(String),
    /// The session was told to quit while waiting for a peer.
    #[error("quit while waiting for the incoming migration")]
    Quit,
}

/// The most an incoming stream may hold: RAM, plus room for device state
/// (video memory included) and engine state.
pub fn incoming_limit(memory: u64) -> u64 {
    memory.saturating_add(512 << 20)
}

/// Where an incoming snapshot comes from, opened: a file, or a TCP
/// listener waiting for its one peer. Opening is where the user's mistakes
/// show (no such file, an address in use); `receive` reads the stream.
pub enum IncomingSource {
    File {
        file: File,
        len: u64,
        path: PathBuf,
        shown: String,
    },
    Tcp {
        listener: TcpListener,
        shown: String,
    },
}

impl IncomingSource {
    /// Open what `uri` names (`file:PATH` or `tcp:HOST:PORT`); `what` starts
    /// each message (`--incoming`, `migrate-incoming`). A file longer than
    /// `limit` is refused here.
    pub fn open(uri: &str, limit: u64, what: &str) -> Result<IncomingSource, IncomingError> {
        let parsed =
            MigrationUri::parse(uri).map_err(|e| IncomingError::Input(format!("{what} {e}")))?;
        match &parsed {
            MigrationUri::File(path) => {
                let file = File::open(path)
                    .map_err(|e| IncomingError::Input(format!("{what} {}: {e}", path.display())))?;
                let len = file.metadata().map(|m| m.len()).unwrap_or(0);
                if len > limit {
                    return Err(IncomingError::Input(format!(
                        "{what} {}: {len} bytes is more than a snapshot of this machine can be",
                        path.display()
                    )));
                }
                Ok(IncomingSource::File {
                    file,
                    len,
                    path: path.clone(),
                    shown: format!("{what} {}", path.display()),
                })
            }
            MigrationUri::Tcp(host, port) => {
                let listener = TcpListener::bind((host.as_str(), *port))
                    .map_err(|e| IncomingError::Input(format!("{what} {parsed}: {e}")))?;
                Ok(IncomingSource::Tcp {
                    listener,
                    shown: format!("{what} {parsed}"),
                })
            }
        }
    }

    /// Read the snapshot: the file, or the first peer that connects (one
    /// stream; later peers are refused once the listener closes). At most
    /// `limit` bytes. A TCP peer is told whether `check` accepted the
    /// stream (the source counts the migration done only then). While no
    /// peer has connected, `quit` is asked every 50 ms; true gives up.
    pub fn receive(
        self,
        limit: u64,
        check: &dyn Fn(&[u8]) -> Result<(), String>,
        quit: &dyn Fn() -> bool,
    ) -> Result<Incoming, IncomingError> {
        match self {
            IncomingSource::File {
                file,
                len,
                path,
                shown,
            } => {
                let mut bytes = Vec::with_capacity(len.min(limit) as usize);
                file.take(limit)
                    .read_to_end(&mut bytes)
                    .map_err(|e| IncomingError::Input(format!("{shown}: {e}")))?;
                Ok(Incoming {
                    bytes,
                    source: path.display().to_string(),
                    disk_wait: Duration::ZERO,
                })
            }
            IncomingSource::Tcp { listener, shown } => {
                let (s, peer) = accept_unless(&listener, quit)
                    .map_err(|e| IncomingError::Stream(format!("{shown}: {e}")))?
                    .ok_or(IncomingError::Quit)?;
                // One stream only: no one else connects from here on.
                drop(listener);
                log::info!("incoming migration from {peer}");
                let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
                let mut bytes = Vec::new();
                let mut limited = (&s).take(limit + 1);
                limited
                    .read_to_end(&mut bytes)
                    .map_err(|e| IncomingError::Stream(format!("migration from {peer}: {e}")))?;
                if bytes.len() as u64 > limit {
                    let _ = (&s).write_all(b"ERR too much data\n");
                    return Err(IncomingError::Stream(format!(
                        "migration from {peer}: more data than a snapshot of this machine holds"
                    )));
                }
                let verdict = check(&bytes);
                let reply = match &verdict {
                    Ok(()) => ACCEPTED.to_vec(),
                    Err(e) => format!("ERR {e}\n").into_bytes(),
                };
                let _ = (&s).write_all(&reply);
                let _ = s.shutdown(std::net::Shutdown::Both);
                if let Err(e) = verdict {
                    return Err(IncomingError::Stream(format!("migration from {peer}: {e}")));
                }
                Ok(Incoming {
                    bytes,
                    source: format!("{peer}"),
                    disk_wait: DISK_HANDOVER_WAIT,
                })
            }
        }
    }
}

/// The first peer, or None once `quit` says so (asked every 50 ms).
fn accept_unless(
    listener: &TcpListener,
    quit: &dyn Fn() -> bool,
) -> std::io::Result<Option<(TcpStream, std::net::SocketAddr)>> {
    listener.set_nonblocking(true)?;
    loop {
        match listener.accept() {
            Ok((s, peer)) => {
                s.set_nonblocking(false)?;
                return Ok(Some((s, peer)));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if quit() {
                    return Ok(None);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

impl Incoming {
    /// `IncomingSource::open` then `receive`, for `--incoming URI`.
    pub fn receive(
        uri: &str,
        limit: u64,
        check: &dyn Fn(&[u8]) -> Result<(), String>,
    ) -> Result<Incoming, IncomingError> {
        IncomingSource::open(uri, limit, "--incoming")?.receive(limit, check, &|| false)
    }
}
