//! The user-mode network with synthetic guest frames: ARP, DHCP, a TCP
//! connection relayed to a host listener, UDP relayed to a host socket,
//! and junk that must be dropped.

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::time::{Duration, Instant};

use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, IpAddress,
    IpProtocol, Ipv4Packet, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber,
};

use super::frames::{udp_frame, UdpEnd};
use super::*;

const GUEST_MAC: EthernetAddress = EthernetAddress([0x52, 0x54, 0, 0x12, 0x34, 0x56]);

fn guest(port: u16) -> UdpEnd {
    UdpEnd {
        mac: GUEST_MAC,
        ip: GUEST_IP,
        port,
    }
}

fn gateway(ip: Ipv4Addr, port: u16) -> UdpEnd {
    UdpEnd {
        mac: EthernetAddress(GATEWAY_MAC),
        ip,
        port,
    }
}

fn arp_request(target: Ipv4Addr) -> Vec<u8> {
    let repr = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: GUEST_MAC,
        source_protocol_addr: GUEST_IP,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: target,
    };
    let mut buf = vec![0u8; 14 + repr.buffer_len()];
    let mut eth = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.set_src_addr(GUEST_MAC);
    eth.set_dst_addr(EthernetAddress::BROADCAST);
    eth.set_ethertype(EthernetProtocol::Arp);
    repr.emit(&mut ArpPacket::new_unchecked(&mut buf[14..]));
    buf
}

/// Poll until `pred` holds for some output frame (or 2 s pass).
fn poll_for(stack: &mut UserStack, mut pred: impl FnMut(&[u8]) -> bool) -> Option<Vec<u8>> {
    let end = Instant::now() + Duration::from_secs(2);
    while Instant::now() < end {
        if let Some(f) = stack.poll().into_iter().find(|f| pred(f)) {
            return Some(f);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

#[test]
fn arp_for_gateway_and_dns_is_answered() {
    let mut stack = UserStack::new(None);
    for ip in [GATEWAY_IP, DNS_IP] {
        stack.handle_guest_frame(&arp_request(ip));
        let out = stack.poll();
        assert_eq!(out.len(), 1, "one ARP reply for {ip}");
        let eth = EthernetFrame::new_checked(&out[0][..]).unwrap();
        assert_eq!(eth.dst_addr(), GUEST_MAC);
        let arp = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).unwrap()).unwrap();
        let ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr,
            source_protocol_addr,
            ..
        } = arp
        else {
            panic!("not an Ethernet/IPv4 ARP reply");
        };
        assert_eq!(operation, ArpOperation::Reply);
        assert_eq!(source_hardware_addr, EthernetAddress(GATEWAY_MAC));
        assert_eq!(source_protocol_addr, ip);
    }
    // Another address gets no answer.
    stack.handle_guest_frame(&arp_request(Ipv4Addr::new(10, 0, 2, 99)));
    assert!(stack.poll().is_empty());
}

fn dhcp_request(kind: u8) -> Vec<u8> {
    let mut p = vec![0u8; 236];
    p[0] = 1;
    p[1] = 1;
    p[2] = 6;
    p[4..8].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    p[28..34].copy_from_slice(&GUEST_MAC.0);
    p.extend_from_slice(&[99, 130, 83, 99, 53, 1, kind, 255]);
    let src = UdpEnd {
        mac: GUEST_MAC,
        ip: Ipv4Addr::UNSPECIFIED,
        port: 68,
    };
    let dst = UdpEnd {
        mac: EthernetAddress::BROADCAST,
        ip: Ipv4Addr::BROADCAST,
        port: 67,
    };
    udp_frame(src, dst, &p).unwrap()
}

/// (message type, yiaddr, options) of a DHCP reply frame.
fn parse_dhcp_reply(frame: &[u8]) -> (u8, Ipv4Addr, Vec<(u8, Vec<u8>)>) {
    let eth = EthernetFrame::new_checked(frame).unwrap();
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!(ip.src_addr(), GATEWAY_IP);
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!((udp.src_port(), udp.dst_port()), (67, 68));
    let p = udp.payload();
    assert_eq!(p[0], 2, "BOOTREPLY");
    assert_eq!(&p[4..8], &[0xde, 0xad, 0xbe, 0xef], "xid echoed");
    assert_eq!(&p[28..34], &GUEST_MAC.0, "chaddr echoed");
    let yiaddr = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
    let mut opts = Vec::new();
    let mut i = 240;
    let mut kind = 0;
    while p[i] != 255 {
        let (code, len) = (p[i], p[i + 1] as usize);
        let v = p[i + 2..i + 2 + len].to_vec();
        if code == 53 {
            kind = v[0];
        }
        opts.push((code, v));
        i += 2 + len;
    }
    (kind, yiaddr, opts)
}

#[test]
fn dhcp_discover_gets_offer_and_request_gets_ack() {
    let mut stack = UserStack::new(None);
    for (ask, answer) in [(1u8, 2u8), (3, 5)] {
        stack.handle_guest_frame(&dhcp_request(ask));
        let out = stack.poll();
        assert_eq!(out.len(), 1);
        let (kind, yiaddr, opts) = parse_dhcp_reply(&out[0]);
        assert_eq!(kind, answer);
        assert_eq!(yiaddr, GUEST_IP);
        let get = |c: u8| opts.iter().find(|(k, _)| *k == c).map(|(_, v)| v.clone());
        assert_eq!(get(1), Some(vec![255, 255, 255, 0]));
        assert_eq!(get(3), Some(vec![10, 0, 2, 2]));
        assert_eq!(get(6), Some(vec![10, 0, 2, 3]));
        assert_eq!(get(54), Some(vec![10, 0, 2, 2]));
    }
    // A RELEASE (7) is not answered.
    stack.handle_guest_frame(&dhcp_request(7));
    assert!(stack.poll().is_empty());
}

fn tcp_frame(
    src_port: u16,
    dst_port: u16,
    control: TcpControl,
    seq: u32,
    ack: Option<u32>,
    payload: &[u8],
) -> Vec<u8> {
    let repr = TcpRepr {
        src_port,
        dst_port,
        control,
        seq_number: TcpSeqNumber(seq as i32),
        ack_number: ack.map(|a| TcpSeqNumber(a as i32)),
        window_len: 65535,
        window_scale: None,
        max_seg_size: if control == TcpControl::Syn {
            Some(1460)
        } else {
            None
        },
        sack_permitted: false,
        sack_ranges: [None, None, None],
        timestamp: None,
        payload,
    };
    let tcp_len = repr.buffer_len();
    let mut buf = vec![0u8; 14 + 20 + tcp_len];
    let mut eth = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.set_src_addr(GUEST_MAC);
    eth.set_dst_addr(EthernetAddress(GATEWAY_MAC));
    eth.set_ethertype(EthernetProtocol::Ipv4);
    let mut ip = Ipv4Packet::new_unchecked(&mut buf[14..]);
    ip.set_version(4);
    ip.set_header_len(20);
    ip.set_total_len((20 + tcp_len) as u16);
    ip.clear_flags();
    ip.set_hop_limit(64);
    ip.set_next_header(IpProtocol::Tcp);
    ip.set_src_addr(GUEST_IP);
    ip.set_dst_addr(GATEWAY_IP);
    ip.fill_checksum();
    let mut tcp = TcpPacket::new_unchecked(&mut buf[34..]);
    repr.emit(
        &mut tcp,
        &IpAddress::Ipv4(GUEST_IP),
        &IpAddress::Ipv4(GATEWAY_IP),
        &smoltcp::phy::ChecksumCapabilities::default(),
    );
    buf
}

/// (flags syn/ack/fin/rst, seq, ack, payload) of a TCP frame to the guest.
struct Seg {
    syn: bool,
    fin: bool,
    rst: bool,
    seq: u32,
    payload: Vec<u8>,
}

fn parse_tcp(frame: &[u8]) -> Option<Seg> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if ip.next_header() != IpProtocol::Tcp || ip.dst_addr() != GUEST_IP {
        return None;
    }
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    Some(Seg {
        syn: tcp.syn(),
        fin: tcp.fin(),
        rst: tcp.rst(),
        seq: tcp.seq_number().0 as u32,
        payload: tcp.payload().to_vec(),
    })
}

#[test]
fn tcp_to_gateway_reaches_host_loopback_both_ways() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut stack = UserStack::new(None);
    let gp = 40000;
    let iss = 1000u32;
    stack.handle_guest_frame(&tcp_frame(gp, port, TcpControl::Syn, iss, None, &[]));
    let synack = poll_for(&mut stack, |f| parse_tcp(f).is_some_and(|s| s.syn)).expect("SYN-ACK");
    let server_seq = parse_tcp(&synack).unwrap().seq.wrapping_add(1);
    let (mut host, _) = listener.accept().unwrap();
    host.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut seq = iss + 1;
    stack.handle_guest_frame(&tcp_frame(
        gp,
        port,
        TcpControl::None,
        seq,
        Some(server_seq),
        &[],
    ));
    stack.handle_guest_frame(&tcp_frame(
        gp,
        port,
        TcpControl::Psh,
        seq,
        Some(server_seq),
        b"GET /file",
    ));
    seq += 9;
    stack.poll();
    let mut got = [0u8; 9];
    host.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"GET /file");

    host.write_all(b"hello guest").unwrap();
    let data = poll_for(&mut stack, |f| {
        parse_tcp(f).is_some_and(|s| !s.payload.is_empty())
    })
    .expect("data segment for the guest");
    let s = parse_tcp(&data).unwrap();
    assert_eq!(s.payload, b"hello guest");
    assert_eq!(s.seq, server_seq);

    // The host closes: the guest gets a FIN.
    drop(host);
    let fin = poll_for(&mut stack, |f| parse_tcp(f).is_some_and(|s| s.fin)).expect("FIN");
    assert!(!parse_tcp(&fin).unwrap().rst);
    // The guest resets; the connection is gone.
    stack.handle_guest_frame(&tcp_frame(gp, port, TcpControl::Rst, seq, None, &[]));
    stack.poll();
    assert_eq!(stack.tcp_connections(), 0);
}

#[test]
fn guest_fin_shuts_host_write_side_and_refused_port_gets_rst() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut stack = UserStack::new(None);
    stack.handle_guest_frame(&tcp_frame(5000, port, TcpControl::Syn, 0, None, &[]));
    let synack = poll_for(&mut stack, |f| parse_tcp(f).is_some_and(|s| s.syn)).expect("SYN-ACK");
    let server_seq = parse_tcp(&synack).unwrap().seq.wrapping_add(1);
    let (mut host, _) = listener.accept().unwrap();
    host.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    stack.handle_guest_frame(&tcp_frame(
        5000,
        port,
        TcpControl::None,
        1,
        Some(server_seq),
        &[],
    ));
    stack.handle_guest_frame(&tcp_frame(
        5000,
        port,
        TcpControl::Fin,
        1,
        Some(server_seq),
        b"x",
    ));
    stack.poll();
    let mut all = Vec::new();
    host.read_to_end(&mut all).unwrap();
    assert_eq!(all, b"x", "data then EOF on the host side");

    // Nothing listens on the port of a dropped listener: RST.
    drop(listener);
    stack.handle_guest_frame(&tcp_frame(5001, port, TcpControl::Syn, 0, None, &[]));
    let rst = poll_for(&mut stack, |f| parse_tcp(f).is_some_and(|s| s.rst));
    assert!(rst.is_some(), "a refused host port resets the guest");
}

#[test]
fn udp_to_gateway_reaches_host_and_reply_comes_back() {
    let host = UdpSocket::bind("127.0.0.1:0").unwrap();
    host.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let port = host.local_addr().unwrap().port();
    let mut stack = UserStack::new(None);
    let f = udp_frame(guest(7000), gateway(GATEWAY_IP, port), b"ping").unwrap();
    stack.handle_guest_frame(&f);
    let mut buf = [0u8; 64];
    let (n, from) = host.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"ping");
    host.send_to(b"pong", from).unwrap();
    let reply = poll_for(&mut stack, |f| {
        EthernetFrame::new_checked(f)
            .ok()
            .and_then(|e| Ipv4Packet::new_checked(e.payload().to_vec()).ok())
            .is_some_and(|ip| ip.next_header() == IpProtocol::Udp)
    })
    .expect("UDP reply");
    let eth = EthernetFrame::new_checked(&reply[..]).unwrap();
    assert_eq!(eth.dst_addr(), GUEST_MAC);
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert_eq!((ip.src_addr(), ip.dst_addr()), (GATEWAY_IP, GUEST_IP));
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    assert!(udp.verify_checksum(&IpAddress::Ipv4(GATEWAY_IP), &IpAddress::Ipv4(GUEST_IP)));
    assert_eq!((udp.src_port(), udp.dst_port()), (port, 7000));
    assert_eq!(udp.payload(), b"pong");
}

#[test]
fn junk_frames_are_dropped() {
    let mut stack = UserStack::new(None);
    let good = dhcp_request(1);
    for len in 0..good.len() {
        stack.handle_guest_frame(&good[..len]);
    }
    let mut x = 12345u32;
    for _ in 0..2000 {
        let len = (x % 1600) as usize;
        let mut f: Vec<u8> = (0..len)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (x >> 16) as u8
            })
            .collect();
        if f.len() > 14 {
            f[12] = 0x08; // IPv4 ethertype, so the parsers get exercised
            f[13] = 0;
        }
        stack.handle_guest_frame(&f);
        stack.poll();
    }
    // Still working afterwards.
    stack.handle_guest_frame(&arp_request(GATEWAY_IP));
    assert_eq!(stack.poll().len(), 1);
}

#[test]
fn host_forward_connects_to_the_guest_port() {
    let mut stack = UserStack::new(None);
    let host_addr = stack
        .add_forward(HostForward {
            host: "127.0.0.1:0".parse().unwrap(),
            guest_port: 8080,
        })
        .unwrap();
    // The guest has introduced itself (any frame teaches its MAC).
    stack.handle_guest_frame(&arp_request(GATEWAY_IP));
    stack.poll();
    let mut host = std::net::TcpStream::connect(host_addr).unwrap();
    host.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let syn = poll_for(&mut stack, |f| {
        let Some(s) = parse_tcp(f) else { return false };
        s.syn && TcpPacket::new_checked(&f[34..]).is_ok_and(|t| t.dst_port() == 8080)
    })
    .expect("SYN to the guest's port 8080");
    let t = TcpPacket::new_checked(&syn[34..]).unwrap();
    let (local, seq) = (t.src_port(), t.seq_number().0 as u32);
    let next = seq.wrapping_add(1);
    stack.handle_guest_frame(&tcp_frame(
        8080,
        local,
        TcpControl::Syn,
        7000,
        Some(next),
        &[],
    ));
    stack.handle_guest_frame(&tcp_frame(
        8080,
        local,
        TcpControl::Psh,
        7001,
        Some(next),
        b"banner",
    ));
    let mut got = [0u8; 6];
    let end = Instant::now() + Duration::from_secs(2);
    while Instant::now() < end && stack.tcp_connections() == 1 {
        stack.poll();
        if host.peek(&mut got).unwrap_or(0) == 6 {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    host.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"banner");
    host.write_all(b"hi").unwrap();
    let data = poll_for(&mut stack, |f| {
        parse_tcp(f).is_some_and(|s| !s.payload.is_empty())
    })
    .expect("host data for the guest");
    assert_eq!(parse_tcp(&data).unwrap().payload, b"hi");
}

#[test]
fn dns_queries_go_to_the_host_nameserver_and_answers_come_from_10_0_2_3() {
    let resolver = UdpSocket::bind("127.0.0.1:0").unwrap();
    resolver
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut stack = UserStack::new(Some(resolver.local_addr().unwrap()));
    let q = udp_frame(guest(33333), gateway(DNS_IP, 53), b"query").unwrap();
    stack.handle_guest_frame(&q);
    let mut buf = [0u8; 64];
    let (n, from) = resolver.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"query");
    resolver.send_to(b"answer", from).unwrap();
    let reply = poll_for(&mut stack, |f| f.len() > 42).expect("DNS answer");
    let eth = EthernetFrame::new_checked(&reply[..]).unwrap();
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert_eq!(ip.src_addr(), DNS_IP);
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!((udp.src_port(), udp.dst_port()), (53, 33333));
    assert_eq!(udp.payload(), b"answer");
    // Without a host nameserver, queries are dropped.
    let mut silent = UserStack::new(None);
    silent.handle_guest_frame(&q);
    std::thread::sleep(Duration::from_millis(20));
    assert!(silent.poll().is_empty());
}
