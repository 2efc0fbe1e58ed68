//! `GdbServer`: the `--gdb tcp:HOST:PORT[,wait=on]` listener. One debugger
//! at a time: on connect every vCPU halts; on disconnect the breakpoints go
//! and the guest runs on (as with QEMU); `kill` from gdb quits the machine.
//! When the machine ends, a connected gdb hears that the program exited
//! with Kite's exit status.
//!
//! It must not know registers or breakpoints (the target's).

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use gdbstub::common::Signal;
use gdbstub::conn::ConnectionExt;
use gdbstub::stub::run_blocking::{BlockingEventLoop, Event, WaitForStopReasonError};
use gdbstub::stub::{DisconnectReason, GdbStub, MultiThreadStopReason};

use super::hub::DebugHub;
use super::target::{tid_of, KiteTarget, TargetFatal};
use crate::control::MachineControl;

/// How long `finish` waits for a connected gdb to hear of the exit.
const FINISH_TIMEOUT: Duration = Duration::from_secs(2);

/// A bad `--gdb` value or an address that cannot be listened on.
#[derive(Debug, thiserror::Error)]
pub enum GdbError {
    #[error("--gdb {0}: expected tcp:HOST:PORT[,wait=on|off][,arch=auto|i386|x86-64] (e.g. tcp:127.0.0.1:1234)")]
    Syntax(String),
    #[error("--gdb {spec}: unknown option {option} (wait=on|off, arch=auto|i386|x86-64)")]
    Option { spec: String, option: String },
    #[error("--gdb {spec}: cannot resolve {addr}: {source}")]
    Resolve {
        spec: String,
        addr: String,
        source: std::io::Error,
    },
    #[error("--gdb {spec}: cannot listen on {addr}: {source}")]
    Bind {
        spec: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("--gdb: cannot start the gdb thread: {0}")]
    Thread(std::io::Error),
}

/// Which register layout gdb gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GdbArch {
    /// x86-64 if vCPU 0 is in long mode when gdb connects, else i386.
    Auto,
    I386,
    X86_64,
}

/// Where to listen, whether the guest waits for gdb before its first
/// instruction (QEMU's `-S`), and the register layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GdbConfig {
    pub spec: String,
    /// `HOST:PORT`; an empty host means 127.0.0.1.
    pub addr: String,
    pub wait: bool,
    pub arch: GdbArch,
}

impl GdbConfig {
    /// Parse `tcp:HOST:PORT[,wait=on|off]`.
    pub fn parse(spec: &str) -> Result<GdbConfig, GdbError> {
        let mut parts = spec.split(',');
        let target = parts.next().unwrap_or_default();
        let addr = target
            .strip_prefix("tcp:")
            .filter(|a| {
                a.rsplit_once(':')
                    .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            })
            .ok_or_else(|| GdbError::Syntax(spec.into()))?;
        let addr = match addr.strip_prefix(':') {
            Some(port) => format!("127.0.0.1:{port}"),
            None => addr.to_string(),
        };
        let (mut wait, mut arch) = (false, GdbArch::Auto);
        for option in parts {
            match option {
                "wait=on" | "wait" => wait = true,
                "wait=off" => wait = false,
                "arch=auto" => arch = GdbArch::Auto,
                "arch=i386" => arch = GdbArch::I386,
                "arch=x86-64" | "arch=x86_64" => arch = GdbArch::X86_64,
                _ => {
                    return Err(GdbError::Option {
                        spec: spec.into(),
                        option: option.into(),
                    })
                }
            };
        }
        Ok(GdbConfig {
            spec: spec.into(),
            addr,
            wait,
            arch,
        })
    }
}

/// The running gdb server; `finish` it when the session ends.
pub struct GdbServer {
    hub: Arc<DebugHub>,
    local_addr: SocketAddr,
    done: mpsc::Receiver<()>,
    _thread: JoinHandle<()>,
}

impl GdbServer {
    /// Listen (the address is checked now) and hook the debugger into `session`.
    pub fn start(config: &GdbConfig, session: &MachineControl) -> Result<GdbServer, GdbError> {
        let addr = config
            .addr
            .to_socket_addrs()
            .map_err(|source| GdbError::Resolve {
                spec: config.spec.clone(),
                addr: config.addr.clone(),
                source,
            })?
            .next()
            .ok_or_else(|| GdbError::Syntax(config.spec.clone()))?;
        let listener = TcpListener::bind(addr).map_err(|source| GdbError::Bind {
            spec: config.spec.clone(),
            addr,
            source,
        })?;
        let local_addr = listener.local_addr().unwrap_or(addr);
        listener
            .set_nonblocking(true)
            .map_err(|source| GdbError::Bind {
                spec: config.spec.clone(),
                addr,
                source,
            })?;
        let hub = DebugHub::new(config.wait);
        session.set_debug_hook(hub.clone());
        let (done_tx, done) = mpsc::channel();
        let (thread_hub, session, arch) = (hub.clone(), session.clone(), config.arch);
        let thread = std::thread::Builder::new()
            .name("kite-gdb".into())
            .spawn(move || {
                kite_sandbox::thread_started(kite_sandbox::Role::Gdb);
                serve(listener, &thread_hub, &session, arch);
                let _ = done_tx.send(());
            })
            .map_err(GdbError::Thread)?;
        if config.wait {
            eprintln!("kite: waiting for gdb on {local_addr} (target remote {local_addr})");
        }
        Ok(GdbServer {
            hub,
            local_addr,
            done,
            _thread: thread,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The session ended with `status`: tell a connected gdb, briefly wait
    /// for it to hear, and stop listening.
    pub fn finish(self, status: i32) {
        self.hub.set_ended(status);
        let _ = self.done.recv_timeout(FINISH_TIMEOUT);
    }
}

/// Accept debuggers one after another until the session ends.
fn serve(listener: TcpListener, hub: &Arc<DebugHub>, session: &MachineControl, arch: GdbArch) {
    while hub.ended().is_none() {
        let stream = match listener.accept() {
            Ok((s, peer)) => {
                log::info!("gdb: connection from {peer}");
                s
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            Err(e) => {
                log::warn!("gdb: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if stream.set_nonblocking(false).is_err() {
            continue;
        }
        let _ = stream.set_nodelay(true);
        hub.attach();
        let wide = match arch {
            GdbArch::I386 => false,
            GdbArch::X86_64 => true,
            GdbArch::Auto => in_long_mode(hub),
        };
        let mut target = KiteTarget::new(hub.clone(), wide);
        let result = GdbStub::new(stream).run_blocking::<KiteEventLoop>(&mut target);
        hub.detach();
        match result {
            Ok(DisconnectReason::Kill) => {
                eprintln!("kite: gdb killed the machine");
                session.quit();
            }
            Ok(DisconnectReason::TargetExited(_)) | Ok(DisconnectReason::TargetTerminated(_)) => {
                return
            }
            Ok(DisconnectReason::Disconnect) => log::info!("gdb: detached; the guest runs on"),
            Err(e) => log::info!("gdb: connection ended: {e}"),
        }
    }
}

/// Whether the first vCPU runs in long mode (EFER.LMA).
fn in_long_mode(hub: &DebugHub) -> bool {
    let Some(&first) = hub.vcpus().first() else {
        return false;
    };
    matches!(
        hub.on_vcpu(first, |v| v
            .sregs()
            .map(|s| s.efer & kite_hypervisor::x86::EFER_LMA != 0)),
        Ok(Ok(true))
    )
}

/// gdbstub's wait for "the target stopped, or gdb sent something".
enum KiteEventLoop {}

impl BlockingEventLoop for KiteEventLoop {
    type Target = KiteTarget;
    type Connection = TcpStream;
    type StopReason = MultiThreadStopReason<u64>;

    fn wait_for_stop_reason(
        target: &mut KiteTarget,
        conn: &mut TcpStream,
    ) -> Result<Event<Self::StopReason>, WaitForStopReasonError<TargetFatal, std::io::Error>> {
        loop {
            if let Some(status) = target.hub().ended() {
                return Ok(Event::TargetStopped(MultiThreadStopReason::Exited(
                    status.clamp(0, 255) as u8,
                )));
            }
            if let Some(stop) = target.hub().wait_stop(Duration::from_millis(20)) {
                return Ok(Event::TargetStopped(target.stop_reason(stop)));
            }
            // Anything from gdb (Ctrl-C, or a packet while running)?
            conn.set_nonblocking(true)
                .map_err(WaitForStopReasonError::Connection)?;
            let mut byte = [0u8; 1];
            let peeked = TcpStream::peek(conn, &mut byte);
            conn.set_nonblocking(false)
                .map_err(WaitForStopReasonError::Connection)?;
            match peeked {
                Ok(0) => {
                    return Err(WaitForStopReasonError::Connection(
                        ErrorKind::UnexpectedEof.into(),
                    ))
                }
                Ok(_) => {
                    let b =
                        ConnectionExt::read(conn).map_err(WaitForStopReasonError::Connection)?;
                    return Ok(Event::IncomingData(b));
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(WaitForStopReasonError::Connection(e)),
            }
        }
    }

    fn on_interrupt(target: &mut KiteTarget) -> Result<Option<Self::StopReason>, TargetFatal> {
        target.hub().halt();
        let vcpu = target.hub().vcpus().first().copied().unwrap_or(0);
        Ok(Some(MultiThreadStopReason::SignalWithThread {
            tid: tid_of(vcpu),
            signal: Signal::SIGINT,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gdb_specs_parse_as_qemu_spells_them() {
        let c = GdbConfig::parse("tcp:127.0.0.1:1234").unwrap();
        assert_eq!((c.addr.as_str(), c.wait), ("127.0.0.1:1234", false));
        let c = GdbConfig::parse("tcp::1234,wait=on").unwrap();
        assert_eq!((c.addr.as_str(), c.wait), ("127.0.0.1:1234", true));
        let c = GdbConfig::parse("tcp:localhost:99,wait=off").unwrap();
        assert_eq!((c.addr.as_str(), c.wait), ("localhost:99", false));
        assert_eq!(c.arch, GdbArch::Auto);
        let c = GdbConfig::parse("tcp::1,arch=x86-64,wait=on").unwrap();
        assert_eq!((c.arch, c.wait), (GdbArch::X86_64, true));
        assert_eq!(
            GdbConfig::parse("tcp::1,arch=i386").unwrap().arch,
            GdbArch::I386
        );
        for bad in [
            "1234",
            "tcp:host",
            "tcp:host:port",
            "udp:1.2.3.4:5",
            "tcp::70000",
        ] {
            assert!(
                matches!(GdbConfig::parse(bad), Err(GdbError::Syntax(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            GdbConfig::parse("tcp::1234,stop=yes"),
            Err(GdbError::Option { .. })
        ));
    }

    #[test]
    fn an_address_in_use_is_refused_before_the_guest_starts() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let config = GdbConfig::parse(&format!("tcp:127.0.0.1:{port}")).unwrap();
        let err = GdbServer::start(&config, &MachineControl::new()).err();
        assert!(matches!(err, Some(GdbError::Bind { .. })), "{err:?}");
    }
}
