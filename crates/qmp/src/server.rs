//! The QMP server: listening sockets, one reader and one writer thread per
//! client, events to every negotiated client.
//!
//! A client cannot wedge the machine: each has a bounded outgoing queue
//! drained by its own writer thread (with a write timeout); an event that
//! finds the queue full drops that client. A text over `MAX_MESSAGE` bytes
//! drops the client too. A client that disconnects mid-command changes
//! nothing: the command completes, its reply is discarded.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::address::{Endpoint, ListenAddress};
use crate::backend::QmpBackend;
use crate::commands::{version_json, Session};
use crate::error::{QmpError, ServerError};
use crate::event::QmpEvent;
use crate::framing::{Frame, Framer};
use crate::stream::Stream;

/// The largest JSON text a client may send.
pub const MAX_MESSAGE: usize = 1 << 20;
/// Clients connected at once; more are refused.
pub const MAX_CLIENTS: usize = 64;
/// Messages queued for one client before it counts as stuck.
const QUEUE_DEPTH: usize = 256;
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct Client {
    id: u64,
    tx: SyncSender<String>,
    negotiated: AtomicBool,
    stream: Stream,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Client {
    fn drop_connection(&self) {
        self.stream.shutdown();
    }
}

struct Shared {
    backend: Arc<dyn QmpBackend>,
    clients: Mutex<Vec<Arc<Client>>>,
    connected: Condvar,
    ever_connected: Mutex<bool>,
    next_id: AtomicU64,
    unix_paths: Mutex<Vec<PathBuf>>,
}

/// A QMP server for one machine; clones share it.
#[derive(Clone)]
pub struct QmpServer {
    shared: Arc<Shared>,
}

impl QmpServer {
    pub fn new(backend: Arc<dyn QmpBackend>) -> QmpServer {
        QmpServer {
            shared: Arc::new(Shared {
                backend,
                clients: Mutex::new(Vec::new()),
                connected: Condvar::new(),
                ever_connected: Mutex::new(false),
                next_id: AtomicU64::new(0),
                unix_paths: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Bind `addr` and accept clients on a thread of its own. A Unix path
    /// that holds a stale socket is replaced (as QEMU does).
    pub fn listen(&self, addr: &ListenAddress) -> Result<(), ServerError> {
        let shown = match &addr.endpoint {
            Endpoint::Unix(p) => format!("unix:{}", p.display()),
            Endpoint::Tcp(h, p) => format!("tcp:{h}:{p}"),
        };
        let bind_err = |source| ServerError::Bind {
            addr: shown.clone(),
            source,
        };
        let shared = self.shared.clone();
        let spawn = |f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name("kite-qmp-accept".into())
                .spawn(move || {
                    kite_sandbox::thread_started(kite_sandbox::Role::Qmp);
                    f()
                })
                .map(|_| ())
                .map_err(ServerError::Thread)
        };
        match &addr.endpoint {
            Endpoint::Unix(path) => {
                let l = kite_sandbox::listen::unix_listener(path).map_err(bind_err)?;
                lock(&self.shared.unix_paths).push(path.clone());
                spawn(Box::new(move || {
                    for conn in l.incoming() {
                        match conn {
                            Ok(s) => accept(&shared, Stream::Unix(s)),
                            Err(e) => log::warn!("qmp: accept: {e}"),
                        }
                    }
                }))
            }
            Endpoint::Tcp(host, port) => {
                let l = TcpListener::bind((host.as_str(), *port)).map_err(bind_err)?;
                spawn(Box::new(move || {
                    for conn in l.incoming() {
                        match conn {
                            Ok(s) => {
                                let _ = s.set_nodelay(true);
                                accept(&shared, Stream::Tcp(s))
                            }
                            Err(e) => log::warn!("qmp: accept: {e}"),
                        }
                    }
                }))
            }
        }
    }

    /// Block until some client has connected (for `wait=on`).
    pub fn wait_for_client(&self) {
        let mut seen = lock(&self.shared.ever_connected);
        while !*seen {
            seen = self
                .shared
                .connected
                .wait(seen)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Send `event` to every negotiated client.
    pub fn broadcast(&self, event: QmpEvent) {
        let text = event.to_json().to_string();
        let clients = lock(&self.shared.clients).clone();
        for c in clients {
            if !c.negotiated.load(Ordering::SeqCst) {
                continue;
            }
            if let Err(TrySendError::Full(_)) = c.tx.try_send(text.clone()) {
                log::warn!("qmp: client {} does not read its events: dropped", c.id);
                c.drop_connection();
            }
        }
    }

    /// Let every client's queue drain (up to `timeout` in all), then close
    /// them and remove the Unix sockets.
    pub fn shutdown(&self, timeout: Duration) {
        let clients = std::mem::take(&mut *lock(&self.shared.clients));
        let deadline = Instant::now() + timeout;
        for c in &clients {
            // The flush marker ends the writer once the queue before it is out.
            loop {
                match c.tx.try_send(String::new()) {
                    Err(TrySendError::Full(_)) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    _ => break,
                }
            }
        }
        for c in &clients {
            if let Some(w) = lock(&c.writer).take() {
                while !w.is_finished() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            c.drop_connection();
        }
        for p in lock(&self.shared.unix_paths).drain(..) {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Greet a new client and start its threads (or refuse it).
fn accept(shared: &Arc<Shared>, stream: Stream) {
    let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
    let mut clients = lock(&shared.clients);
    if clients.len() >= MAX_CLIENTS {
        log::warn!("qmp: {MAX_CLIENTS} clients connected already: refusing another");
        stream.shutdown();
        return;
    }
    let (writer_stream, reader_stream) = match (stream.try_clone(), stream.try_clone()) {
        (Ok(w), Ok(r)) => (w, r),
        _ => {
            stream.shutdown();
            return;
        }
    };
    let _ = writer_stream.set_write_timeout(WRITE_TIMEOUT);
    let (tx, rx) = sync_channel::<String>(QUEUE_DEPTH);
    let _ = tx.try_send(greeting(shared.backend.as_ref()).to_string());
    let client = Arc::new(Client {
        id,
        tx,
        negotiated: AtomicBool::new(false),
        stream,
        writer: Mutex::new(None),
    });
    let writer = std::thread::Builder::new()
        .name(format!("kite-qmp-w{id}"))
        .spawn(move || {
            kite_sandbox::thread_started(kite_sandbox::Role::Qmp);
            write_loop(writer_stream, rx)
        });
    let c = client.clone();
    let sh = shared.clone();
    let reader = std::thread::Builder::new()
        .name(format!("kite-qmp-r{id}"))
        .spawn(move || {
            kite_sandbox::thread_started(kite_sandbox::Role::Qmp);
            read_loop(&sh, &c, reader_stream);
            lock(&sh.clients).retain(|x| x.id != c.id);
            // Let the writer send what is queued (an error saying why), then
            // close; at once if the client does not even read that.
            if c.tx.try_send(String::new()).is_err() {
                c.drop_connection();
            }
        });
    match (writer, reader) {
        (Ok(w), Ok(_)) => {
            *lock(&client.writer) = Some(w);
            clients.push(client);
            *lock(&shared.ever_connected) = true;
            shared.connected.notify_all();
        }
        _ => {
            log::warn!("qmp: cannot start a client's threads");
            client.drop_connection();
        }
    }
}

fn write_loop(mut stream: Stream, rx: Receiver<String>) {
    for msg in rx {
        if msg.is_empty() {
            // The flush marker: everything before it is out.
            stream.shutdown();
            return;
        }
        if stream.write_all(msg.as_bytes()).is_err() || stream.write_all(b"\r\n").is_err() {
            stream.shutdown();
            return;
        }
    }
}

fn read_loop(shared: &Shared, client: &Client, mut stream: Stream) {
    let mut framer = Framer::new(MAX_MESSAGE);
    let mut session = Session::default();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        for frame in framer.feed(&buf[..n]) {
            let text = match frame {
                Frame::Text(t) => t,
                Frame::TooLong => {
                    let e = QmpError::generic(format!(
                        "JSON text longer than {MAX_MESSAGE} bytes: closing the connection"
                    ));
                    let _ = client.tx.send(json!({"error": e.to_json()}).to_string());
                    log::warn!(
                        "qmp: client {} sent an oversized message: dropped",
                        client.id
                    );
                    return;
                }
            };
            let reply = session.handle(&text, shared.backend.as_ref());
            client
                .negotiated
                .store(session.negotiated(), Ordering::SeqCst);
            // Blocks only this client if it does not read its replies.
            if client.tx.send(reply.message.to_string()).is_err() {
                return;
            }
            if reply.then_quit {
                shared.backend.quit();
            }
        }
    }
}

/// The greeting a client gets on connecting.
pub fn greeting(backend: &dyn QmpBackend) -> Value {
    json!({"QMP": {"version": version_json(backend), "capabilities": []}})
}
