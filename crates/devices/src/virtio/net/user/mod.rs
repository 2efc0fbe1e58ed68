//! User-mode networking (`--net user`), needing no privileges, with QEMU's
//! addressing: the guest is 10.0.2.15/24, the gateway 10.0.2.2 stands for
//! the host's loopback, 10.0.2.3 is the DNS server.
//!
//! The gateway side is a smoltcp `Interface` (10.0.2.2 and 10.0.2.3, which
//! answers ARP and ping) on a virtual device whose frames are the guest's.
//! Before a frame reaches smoltcp it is inspected: a TCP SYN to 10.0.2.2:PORT
//! opens a host connection to 127.0.0.1:PORT and, if that succeeds, a
//! listening smoltcp socket on PORT that accepts the guest's connection (a
//! refused host connection leaves no listener, so smoltcp answers RST); the
//! backend thread then relays bytes both ways and propagates FIN and RST.
//! UDP never reaches smoltcp: port 67 goes to the DHCP server (`dhcp`),
//! datagrams to 10.0.2.2:PORT go to 127.0.0.1:PORT and datagrams to
//! 10.0.2.3:53 to the first IPv4 nameserver of the host's /etc/resolv.conf
//! (none: dropped); replies come back as from the address the guest used.
//! Inbound forwards (`hostfwd`) listen on a host address and, per accepted
//! host connection, open a smoltcp connection to 10.0.2.15:GUESTPORT.
//! Nothing else leaves the host. The guest is hostile: malformed frames are
//! dropped, and connections, flows and buffers are bounded.

pub mod dhcp;
pub mod frames;

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::tcp;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, HardwareAddress, IpCidr, IpProtocol,
    Ipv4Packet, TcpPacket, UdpPacket,
};

use self::frames::{udp_frame, UdpEnd};
use super::NetBackend;
use crate::bus::lock;

pub const GUEST_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
pub const GATEWAY_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
pub const DNS_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);
/// The gateway's MAC address (QEMU's).
pub const GATEWAY_MAC: [u8; 6] = [0x52, 0x55, 0x0a, 0x00, 0x02, 0x02];
/// Guest TCP connections relayed at once.
pub const MAX_TCP: usize = 64;
/// Guest UDP flows relayed at once (the least recently used is replaced).
pub const MAX_UDP: usize = 64;
/// Each smoltcp socket's receive and send buffer.
const TCP_BUFFER: usize = 64 * 1024;
/// Guest frames waiting for the backend thread.
const TX_QUEUE_FRAMES: usize = 512;
/// Frames smoltcp has not yet read / frames waiting for the guest in one poll.
const MAX_QUEUED: usize = 1024;
/// A connection that never completes its handshake is dropped after this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const UDP_IDLE: Duration = Duration::from_secs(60);
const MTU: usize = 1514;
/// Local ports on 10.0.2.2 for forwarded connections.
const FORWARD_PORTS_START: u16 = 49152;

/// The vCPU side: guest frames go to the backend thread through a bounded
/// channel (a frame is dropped when it is full).
pub struct UserNetTx {
    tx: Mutex<SyncSender<Vec<u8>>>,
}

impl NetBackend for UserNetTx {
    fn transmit_frame(&self, frame: &[u8]) {
        match lock(&self.tx).try_send(frame.to_vec()) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => log::debug!("user net: backend busy; frame dropped"),
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

/// An inbound TCP forward: connections to `host` reach the guest's port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostForward {
    pub host: SocketAddr,
    pub guest_port: u16,
}

/// A new user-mode network: the backend for the device, and the stack with
/// the receiving end of its frames for [`UserStack::run`]. Fails when a
/// forward's host address cannot be listened on.
pub fn user_network(
    forwards: &[HostForward],
) -> std::io::Result<(UserNetTx, UserStack, Receiver<Vec<u8>>)> {
    let (tx, rx) = sync_channel(TX_QUEUE_FRAMES);
    let mut stack = UserStack::new(host_nameserver());
    for f in forwards {
        stack.add_forward(*f)?;
    }
    Ok((UserNetTx { tx: Mutex::new(tx) }, stack, rx))
}

/// The first IPv4 nameserver of /etc/resolv.conf.
fn host_nameserver() -> Option<SocketAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").ok()?;
    text.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        if w.next()? != "nameserver" {
            return None;
        }
        let ip: Ipv4Addr = w.next()?.parse().ok()?;
        Some(SocketAddr::V4(SocketAddrV4::new(ip, 53)))
    })
}

/// smoltcp's side of the wire: frames from the guest in, frames to it out.
struct FrameQueue {
    from_guest: VecDeque<Vec<u8>>,
    to_guest: Vec<Vec<u8>>,
}

struct FrameRx(Vec<u8>);
struct FrameTx<'a>(&'a mut Vec<Vec<u8>>);

impl RxToken for FrameRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl TxToken for FrameTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        if self.0.len() < MAX_QUEUED {
            self.0.push(buf);
        }
        r
    }
}

impl Device for FrameQueue {
    type RxToken<'a> = FrameRx;
    type TxToken<'a> = FrameTx<'a>;

    fn receive(
        &mut self,
        _timestamp: smoltcp::time::Instant,
    ) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let f = self.from_guest.pop_front()?;
        Some((FrameRx(f), FrameTx(&mut self.to_guest)))
    }

    fn transmit(&mut self, _timestamp: smoltcp::time::Instant) -> Option<Self::TxToken<'_>> {
        Some(FrameTx(&mut self.to_guest))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ethernet;
        c.max_transmission_unit = MTU;
        c
    }
}

/// One guest TCP connection and its host end.
struct TcpConn {
    handle: SocketHandle,
    guest_port: u16,
    port: u16,
    stream: TcpStream,
    created: Instant,
    /// The handshake completed (the socket left Listen/SynReceived).
    opened: bool,
    /// The host closed its sending side (FIN sent to the guest).
    host_eof: bool,
    /// The guest's FIN was passed on (host write side shut).
    guest_eof: bool,
}

/// One guest UDP flow: (guest port, address it used, port it used).
struct UdpFlow {
    guest_port: u16,
    ip: Ipv4Addr,
    port: u16,
    socket: UdpSocket,
    last_used: Instant,
}

/// The gateway's network stack; runs on the backend thread.
pub struct UserStack {
    iface: Interface,
    device: FrameQueue,
    sockets: SocketSet<'static>,
    tcp: Vec<TcpConn>,
    udp: Vec<UdpFlow>,
    guest_mac: Option<EthernetAddress>,
    epoch: Instant,
    nameserver: Option<SocketAddr>,
    /// Host listeners of inbound forwards, with the guest port each reaches.
    forwards: Vec<(TcpListener, u16)>,
    /// The next local port for a forwarded connection.
    next_port: u16,
}

impl UserStack {
    /// A stack whose DNS address forwards to `nameserver` (None: no DNS).
    pub fn new(nameserver: Option<SocketAddr>) -> UserStack {
        let mut device = FrameQueue {
            from_guest: VecDeque::new(),
            to_guest: Vec::new(),
        };
        let config = Config::new(HardwareAddress::Ethernet(EthernetAddress(GATEWAY_MAC)));
        let epoch = Instant::now();
        let mut iface = Interface::new(config, &mut device, smoltcp::time::Instant::ZERO);
        iface.update_ip_addrs(|addrs| {
            for ip in [GATEWAY_IP, DNS_IP] {
                if addrs.push(IpCidr::new(ip.into(), 24)).is_err() {
                    log::warn!("user net: smoltcp has no room for address {ip}");
                }
            }
        });
        UserStack {
            iface,
            device,
            sockets: SocketSet::new(Vec::new()),
            tcp: Vec::new(),
            udp: Vec::new(),
            guest_mac: None,
            epoch,
            nameserver,
            forwards: Vec::new(),
            next_port: FORWARD_PORTS_START,
        }
    }

    /// Listen on `f.host`; returns the address bound (port 0 picks one).
    pub fn add_forward(&mut self, f: HostForward) -> std::io::Result<SocketAddr> {
        let l = TcpListener::bind(f.host)?;
        l.set_nonblocking(true)?;
        let addr = l.local_addr()?;
        self.forwards.push((l, f.guest_port));
        Ok(addr)
    }

    /// Accept host connections on the forwards and connect them to the guest.
    fn accept_forwards(&mut self) {
        for i in 0..self.forwards.len() {
            while self.tcp.len() < MAX_TCP {
                let (l, guest_port) = &self.forwards[i];
                let guest_port = *guest_port;
                let Ok((stream, _)) = l.accept() else {
                    break;
                };
                if stream.set_nonblocking(true).is_err() {
                    continue;
                }
                let _ = stream.set_nodelay(true);
                let local = self.next_port;
                self.next_port = if local == u16::MAX {
                    FORWARD_PORTS_START
                } else {
                    local + 1
                };
                let mut socket = tcp::Socket::new(
                    tcp::SocketBuffer::new(vec![0; TCP_BUFFER]),
                    tcp::SocketBuffer::new(vec![0; TCP_BUFFER]),
                );
                socket.set_nagle_enabled(false);
                if socket
                    .connect(
                        self.iface.context(),
                        (GUEST_IP, guest_port),
                        (GATEWAY_IP, local),
                    )
                    .is_err()
                {
                    continue;
                }
                let handle = self.sockets.add(socket);
                self.tcp.push(TcpConn {
                    handle,
                    guest_port,
                    port: local,
                    stream,
                    created: Instant::now(),
                    opened: false,
                    host_eof: false,
                    guest_eof: false,
                });
            }
        }
    }

    fn now(&self) -> smoltcp::time::Instant {
        smoltcp::time::Instant::from_millis(self.epoch.elapsed().as_millis() as i64)
    }

    /// Relayed TCP connections (including ones still in their handshake).
    pub fn tcp_connections(&self) -> usize {
        self.tcp.len()
    }

    /// Take one frame from the guest; malformed frames are dropped.
    pub fn handle_guest_frame(&mut self, frame: &[u8]) {
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return;
        };
        let src_mac = eth.src_addr();
        if src_mac.is_unicast() && self.guest_mac != Some(src_mac) {
            self.guest_mac = Some(src_mac);
            // Tell smoltcp where the guest is, so it need not ask by ARP.
            if self.device.from_guest.len() < MAX_QUEUED {
                self.device
                    .from_guest
                    .push_back(frames::arp_reply_from_guest(src_mac));
            }
        }
        if eth.ethertype() == EthernetProtocol::Ipv4 {
            let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
                return;
            };
            if !ip.verify_checksum() || ip.more_frags() || ip.frag_offset() != 0 {
                return;
            }
            match ip.next_header() {
                IpProtocol::Udp => {
                    if let Ok(udp) = UdpPacket::new_checked(ip.payload()) {
                        self.handle_udp(
                            ip.dst_addr(),
                            udp.src_port(),
                            udp.dst_port(),
                            udp.payload(),
                        );
                    }
                    return;
                }
                IpProtocol::Tcp if ip.dst_addr() == GATEWAY_IP => {
                    let Ok(tcp) = TcpPacket::new_checked(ip.payload()) else {
                        return;
                    };
                    if tcp.syn() && !tcp.ack() {
                        self.open_tcp(tcp.src_port(), tcp.dst_port());
                    }
                }
                _ => {}
            }
        }
        if self.device.from_guest.len() < MAX_QUEUED {
            self.device.from_guest.push_back(frame.to_vec());
        }
    }

    /// A guest SYN to 10.0.2.2:`port`: connect to the host and listen.
    fn open_tcp(&mut self, guest_port: u16, port: u16) {
        if port == 0
            || self
                .tcp
                .iter()
                .any(|c| c.guest_port == guest_port && c.port == port)
        {
            return;
        }
        if self.tcp.len() >= MAX_TCP {
            log::debug!("user net: too many TCP connections; refusing port {port}");
            return;
        }
        let host = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
        let stream = match TcpStream::connect_timeout(&host, Duration::from_secs(1)) {
            Ok(s) => s,
            Err(e) => {
                log::debug!("user net: host connection to {host} failed: {e}");
                return;
            }
        };
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        let _ = stream.set_nodelay(true);
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; TCP_BUFFER]),
            tcp::SocketBuffer::new(vec![0; TCP_BUFFER]),
        );
        socket.set_nagle_enabled(false);
        if socket.listen(port).is_err() {
            return;
        }
        let handle = self.sockets.add(socket);
        self.tcp.push(TcpConn {
            handle,
            guest_port,
            port,
            stream,
            created: Instant::now(),
            opened: false,
            host_eof: false,
            guest_eof: false,
        });
    }

    fn guest_end(&self, port: u16) -> UdpEnd {
        UdpEnd {
            mac: self.guest_mac.unwrap_or(EthernetAddress::BROADCAST),
            ip: GUEST_IP,
            port,
        }
    }

    fn handle_udp(&mut self, dst: Ipv4Addr, guest_port: u16, port: u16, payload: &[u8]) {
        if port == 67 {
            if let Some(reply) = dhcp::reply(payload) {
                let src = UdpEnd {
                    mac: EthernetAddress(GATEWAY_MAC),
                    ip: GATEWAY_IP,
                    port: 67,
                };
                let dst = UdpEnd {
                    mac: EthernetAddress::BROADCAST,
                    ip: Ipv4Addr::BROADCAST,
                    port: 68,
                };
                if let Some(f) = udp_frame(src, dst, &reply) {
                    self.device.to_guest.push(f);
                }
            }
            return;
        }
        let target = if dst == GATEWAY_IP && port != 0 {
            SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
        } else if dst == DNS_IP && port == 53 {
            match self.nameserver {
                Some(ns) => ns,
                None => return,
            }
        } else {
            return;
        };
        let now = Instant::now();
        let i = match self
            .udp
            .iter()
            .position(|f| f.guest_port == guest_port && f.ip == dst && f.port == port)
        {
            Some(i) => i,
            None => {
                let Some(socket) = connect_udp(target) else {
                    return;
                };
                if self.udp.len() >= MAX_UDP {
                    if let Some(oldest) = (0..self.udp.len()).min_by_key(|&i| self.udp[i].last_used)
                    {
                        self.udp.swap_remove(oldest);
                    }
                }
                self.udp.push(UdpFlow {
                    guest_port,
                    ip: dst,
                    port,
                    socket,
                    last_used: now,
                });
                self.udp.len() - 1
            }
        };
        let flow = &mut self.udp[i];
        flow.last_used = now;
        if let Err(e) = flow.socket.send(payload) {
            log::debug!("user net: UDP to {target} failed: {e}");
        }
    }

    /// Run smoltcp and relay between it and the host; returns the frames
    /// for the guest.
    pub fn poll(&mut self) -> Vec<Vec<u8>> {
        self.accept_forwards();
        let now = self.now();
        self.iface.poll(now, &mut self.device, &mut self.sockets);
        self.relay_tcp();
        self.iface.poll(now, &mut self.device, &mut self.sockets);
        self.relay_udp();
        std::mem::take(&mut self.device.to_guest)
    }

    fn relay_tcp(&mut self) {
        let mut i = 0;
        while i < self.tcp.len() {
            let c = &mut self.tcp[i];
            let sock = self.sockets.get_mut::<tcp::Socket>(c.handle);
            let done = relay_one(c, sock);
            if done {
                let c = self.tcp.swap_remove(i);
                self.sockets.remove(c.handle);
            } else {
                i += 1;
            }
        }
    }

    fn relay_udp(&mut self) {
        let mut buf = [0u8; frames::MAX_UDP_PAYLOAD + 1];
        let mut out = Vec::new();
        for f in &self.udp {
            for _ in 0..16 {
                match f.socket.recv(&mut buf) {
                    Ok(n) if n <= frames::MAX_UDP_PAYLOAD => {
                        let src = UdpEnd {
                            mac: EthernetAddress(GATEWAY_MAC),
                            ip: f.ip,
                            port: f.port,
                        };
                        if let Some(frame) = udp_frame(src, self.guest_end(f.guest_port), &buf[..n])
                        {
                            out.push(frame);
                        }
                    }
                    Ok(_) => log::debug!("user net: UDP reply too large for one frame; dropped"),
                    Err(_) => break,
                }
            }
        }
        let now = Instant::now();
        self.udp
            .retain(|f| now.duration_since(f.last_used) < UDP_IDLE);
        self.device.to_guest.extend(out);
    }

    /// How long the backend thread may sleep when no frame arrives.
    fn wait_time(&mut self) -> Duration {
        if self.tcp.is_empty() && self.udp.is_empty() {
            let idle = if self.forwards.is_empty() { 100 } else { 20 };
            return Duration::from_millis(idle);
        }
        let now = self.now();
        let d = self
            .iface
            .poll_delay(now, &self.sockets)
            .map(|d| Duration::from_micros(d.total_micros()))
            .unwrap_or(Duration::from_millis(5));
        d.clamp(Duration::from_millis(1), Duration::from_millis(5))
    }

    /// The backend thread's loop: take guest frames from `frames`, hand
    /// frames for the guest to `deliver` (which returns false once the
    /// device is gone); ends when the device's sender is dropped.
    pub fn run(mut self, frames: Receiver<Vec<u8>>, mut deliver: impl FnMut(Vec<Vec<u8>>) -> bool) {
        loop {
            match frames.recv_timeout(self.wait_time()) {
                Ok(f) => {
                    self.handle_guest_frame(&f);
                    while let Ok(f) = frames.try_recv() {
                        self.handle_guest_frame(&f);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            let out = self.poll();
            if !out.is_empty() && !deliver(out) {
                return;
            }
        }
    }
}

fn connect_udp(target: SocketAddr) -> Option<UdpSocket> {
    let bind: SocketAddr = if target.ip().is_loopback() {
        (Ipv4Addr::LOCALHOST, 0).into()
    } else {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let s = UdpSocket::bind(bind).ok()?;
    s.connect(target).ok()?;
    s.set_nonblocking(true).ok()?;
    Some(s)
}

/// Make closing `stream` send RST rather than FIN (SO_LINGER 0).
fn set_reset_on_close(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt reads one `struct linger` from a live local.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

enum HostRead {
    Data,
    Eof,
    Nothing,
    Failed,
}

/// Relay one connection; returns whether it is finished.
fn relay_one(c: &mut TcpConn, sock: &mut tcp::Socket) -> bool {
    use tcp::State;
    let state = sock.state();
    if !c.opened {
        match state {
            State::Listen | State::SynReceived | State::SynSent => {
                return c.created.elapsed() > HANDSHAKE_TIMEOUT;
            }
            State::Closed => {
                // Refused by the guest (forward): reset the host's side.
                set_reset_on_close(&c.stream);
                return true;
            }
            _ => c.opened = true,
        }
    }
    // Guest to host.
    while sock.can_recv() {
        let r = sock.recv(|buf| match (&c.stream).write(buf) {
            Ok(n) => (n, Ok(n)),
            Err(e) => (0, Err(e)),
        });
        match r {
            Ok(Ok(0)) => break,
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.kind() == ErrorKind::WouldBlock => break,
            Ok(Err(e)) if e.kind() == ErrorKind::Interrupted => {}
            _ => {
                sock.abort();
                return true;
            }
        }
    }
    if !c.guest_eof && !sock.may_recv() && !sock.can_recv() && state != State::Closed {
        // The guest sent FIN and everything before it reached the host.
        let _ = c.stream.shutdown(Shutdown::Write);
        c.guest_eof = true;
    }
    // Host to guest.
    while !c.host_eof && sock.can_send() {
        let r = sock.send(|buf| match (&c.stream).read(buf) {
            Ok(0) => (0, HostRead::Eof),
            Ok(n) => (n, HostRead::Data),
            Err(e) if e.kind() == ErrorKind::WouldBlock => (0, HostRead::Nothing),
            Err(e) if e.kind() == ErrorKind::Interrupted => (0, HostRead::Data),
            Err(_) => (0, HostRead::Failed),
        });
        match r {
            Ok(HostRead::Data) => {}
            Ok(HostRead::Eof) => {
                sock.close();
                c.host_eof = true;
            }
            Ok(HostRead::Nothing) => break,
            Ok(HostRead::Failed) | Err(_) => {
                sock.abort();
                return true;
            }
        }
    }
    match sock.state() {
        State::Closed => {
            if !(c.host_eof && c.guest_eof) {
                // The guest reset the connection: reset the host's too.
                set_reset_on_close(&c.stream);
            }
            true
        }
        State::TimeWait => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests;
