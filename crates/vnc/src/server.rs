//! The server: listeners (RFB on TCP or a Unix socket, RFB-in-WebSocket on
//! TCP), one thread per client, and stopping it all.
//!
//! Knows nothing of the protocol's details (see `rfb`) or of devices.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use kite_display::Display;

use crate::config::{host_port, Listen, Share, VncConfig};
use crate::error::VncError;
use crate::rfb::{handshake, session};
use crate::transport::{self, websocket, Stream};

/// At most this many clients at once; more are turned away at accept.
pub const MAX_CLIENTS: usize = 32;
/// A client must finish the opening handshake within this time.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    fn accept(&self) -> std::io::Result<Stream> {
        match self {
            Listener::Tcp(l) => l.accept().map(|(s, _)| Stream::Tcp(s)),
            Listener::Unix(l) => l.accept().map(|(s, _)| Stream::Unix(s)),
        }
    }

    /// Wakes a thread blocked in accept (Linux answers it with an error).
    fn shut(&self) {
        let fd = match self {
            Listener::Tcp(l) => l.as_raw_fd(),
            Listener::Unix(l) => l.as_raw_fd(),
        };
        // SAFETY: fd is a listening socket this Listener owns and keeps open;
        // shutdown only changes its state.
        unsafe {
            libc::shutdown(fd, libc::SHUT_RDWR);
        }
    }
}

struct Inner {
    cfg: VncConfig,
    display: Display,
    stopping: AtomicBool,
    clients: Mutex<HashMap<u64, Stream>>,
    next_id: AtomicU64,
}

impl Inner {
    fn clients(&self) -> MutexGuard<'_, HashMap<u64, Stream>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running VNC server; [`VncServer::stop`] (or dropping it) closes the
/// listeners and every client.
pub struct VncServer {
    inner: Arc<Inner>,
    listeners: Vec<(Arc<Listener>, JoinHandle<()>)>,
    local_addr: Option<SocketAddr>,
    websocket_addr: Option<SocketAddr>,
    unix_path: Option<PathBuf>,
}

fn bind_tcp(host: &str, port: u16) -> Result<TcpListener, VncError> {
    let addr = host_port(host, port);
    TcpListener::bind(&addr).map_err(|source| VncError::Bind { addr, source })
}

impl VncServer {
    /// Binds the listeners and starts accepting clients of `display`.
    pub fn start(cfg: VncConfig, display: Display) -> Result<VncServer, VncError> {
        let mut unix_path = None;
        let (main, local_addr) = match &cfg.listen {
            Listen::Tcp { host, port } => {
                let l = bind_tcp(host, *port)?;
                let a = l.local_addr().ok();
                (Listener::Tcp(l), a)
            }
            Listen::Unix(path) => {
                let l =
                    kite_sandbox::listen::unix_listener(path).map_err(|source| VncError::Bind {
                        addr: format!("unix:{}", path.display()),
                        source,
                    })?;
                unix_path = Some(path.clone());
                (Listener::Unix(l), None)
            }
        };
        let ws = match &cfg.websocket {
            Some((host, port)) => Some(bind_tcp(host, *port)?),
            None => None,
        };
        let websocket_addr = ws.as_ref().and_then(|l| l.local_addr().ok());
        let inner = Arc::new(Inner {
            cfg,
            display,
            stopping: AtomicBool::new(false),
            clients: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        });
        let mut server = VncServer {
            inner,
            listeners: Vec::new(),
            local_addr,
            websocket_addr,
            unix_path,
        };
        server.spawn_listener(main, false)?;
        if let Some(l) = ws {
            server.spawn_listener(Listener::Tcp(l), true)?;
        }
        Ok(server)
    }

    fn spawn_listener(&mut self, l: Listener, websocket: bool) -> Result<(), VncError> {
        let l = Arc::new(l);
        let inner = self.inner.clone();
        let listener = l.clone();
        let name = if websocket { "kite-vnc-ws" } else { "kite-vnc" };
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                kite_sandbox::thread_started(kite_sandbox::Role::Vnc);
                accept_loop(&inner, &listener, websocket)
            })
            .map_err(VncError::Thread)?;
        self.listeners.push((l, handle));
        Ok(())
    }

    /// The TCP address the RFB listener is bound to (None for a Unix socket).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// The TCP address of the WebSocket listener, if there is one.
    pub fn websocket_addr(&self) -> Option<SocketAddr> {
        self.websocket_addr
    }

    /// How many clients are connected now.
    pub fn client_count(&self) -> usize {
        self.inner.clients().len()
    }

    /// Closes the listeners and disconnects every client.
    pub fn stop(&mut self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        for (l, _) in &self.listeners {
            l.shut();
        }
        for (_, h) in self.listeners.drain(..) {
            let _ = h.join();
        }
        for s in self.inner.clients().values() {
            s.shutdown();
        }
        // Client threads end once their sockets are shut; give them a moment
        // so that nothing of this server outlives stop().
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while !self.inner.clients().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Some(p) = self.unix_path.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Drop for VncServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(inner: &Arc<Inner>, l: &Listener, websocket: bool) {
    let mut errors = 0u32;
    loop {
        let accepted = l.accept();
        if inner.stopping.load(Ordering::SeqCst) {
            return;
        }
        let stream = match accepted {
            Ok(s) => s,
            Err(e) => {
                errors += 1;
                if errors <= 5 {
                    log::warn!("vnc: accept failed: {e}");
                }
                // EMFILE and the like: do not spin.
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if inner.clients().len() >= MAX_CLIENTS {
            log::warn!(
                "vnc: {} turned away: already {MAX_CLIENTS} clients",
                stream.peer()
            );
            stream.shutdown();
            continue;
        }
        let inner2 = inner.clone();
        let spawned = std::thread::Builder::new()
            .name("kite-vnc-client".into())
            .spawn(move || {
                kite_sandbox::thread_started(kite_sandbox::Role::Vnc);
                serve(&inner2, stream, websocket)
            });
        if let Err(e) = spawned {
            log::warn!("vnc: cannot start a client thread: {e}");
        }
    }
}

fn serve(inner: &Inner, stream: Stream, websocket: bool) {
    let peer = stream.peer();
    let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
    match stream.try_clone() {
        Ok(c) => {
            inner.clients().insert(id, c);
        }
        Err(e) => {
            log::warn!("vnc: {peer}: {e}");
            return;
        }
    }
    // A stop() between accept and here must still reach this client.
    if inner.stopping.load(Ordering::SeqCst) {
        stream.shutdown();
    }
    let result = serve_inner(inner, id, stream, websocket, &peer);
    inner.clients().remove(&id);
    match result {
        Ok(()) => log::info!("vnc: {peer} disconnected"),
        Err(_) if inner.stopping.load(Ordering::SeqCst) => {}
        Err(e) => log::warn!("vnc: dropping {peer}: {e}"),
    }
}

fn serve_inner(
    inner: &Inner,
    id: u64,
    mut stream: Stream,
    websocket: bool,
    peer: &str,
) -> Result<(), VncError> {
    stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    stream.set_write_timeout(Some(inner.cfg.write_timeout))?;
    stream.set_nodelay();
    if websocket {
        websocket::server_handshake(&mut stream)?;
    }
    let (mut reader, writer, control) = transport::split(stream, websocket)?;
    let neg = handshake::run(&mut reader, &writer, inner.cfg.password.as_deref())?;
    // Idle clients may stay as long as they like.
    control.set_read_timeout(None)?;
    if !neg.shared && inner.cfg.share == Share::AllowExclusive {
        for (other, s) in inner.clients().iter() {
            if *other != id {
                log::info!("vnc: {peer} asked for exclusive access: disconnecting another client");
                s.shutdown();
            }
        }
    }
    log::info!(
        "vnc: {peer} connected (RFB 3.{}{})",
        neg.minor,
        if websocket { ", WebSocket" } else { "" }
    );
    let scfg = session::SessionConfig {
        name: inner.cfg.name.clone(),
        max_fps: inner.cfg.max_fps,
    };
    session::run(reader, writer, inner.display.clone(), &scfg, &|| {
        control.shutdown()
    })
}
