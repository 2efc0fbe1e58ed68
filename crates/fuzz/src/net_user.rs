//! The user-mode network stack (`--net user`) fed the guest's Ethernet
//! frames: ARP, IPv4 with ICMP, UDP to the DHCP server, TCP to smoltcp;
//! and the DHCP server's parser on its own. The harness fixes up the IPv4
//! header checksum when the input asks (so the fuzzer gets past it), and
//! never lets a frame reach the host relay: TCP and UDP to the gateway
//! (10.0.2.2), which the stack would open on the host's loopback, are
//! dropped here, since a fuzzer must not talk to the host's services.
//!
//! Checked: the frames the stack sends the guest are bounded in number per
//! poll and each fits an Ethernet frame; no host connection is ever opened.
//!
//! It must not know the virtio device (see `virtio_net`).

use kite_devices::virtio::net::user::{dhcp, UserStack};

use crate::input::Input;

/// What the stack may hand the guest from one poll at most (its own bound).
const MAX_OUT_FRAMES: usize = 1024;
/// The largest frame, with a VLAN tag.
const MAX_FRAME: usize = 1522;

/// Whether the frame is TCP or UDP to the gateway, other than DHCP.
fn reaches_host(f: &[u8]) -> bool {
    if f.len() < 14 + 20 || f[12..14] != [0x08, 0x00] {
        return false;
    }
    let ip = &f[14..];
    let proto = ip[9];
    let to_gateway = ip[16..20] == [10, 0, 2, 2];
    let ihl = usize::from(ip[0] & 0xf) * 4;
    let dport = ip
        .get(ihl + 2..ihl + 4)
        .map(|p| u16::from_be_bytes([p[0], p[1]]));
    match proto {
        6 => to_gateway,
        17 => to_gateway || dport != Some(67),
        _ => false,
    }
}

/// The Internet checksum of the IPv4 header, written in place.
fn fix_ip_checksum(f: &mut [u8]) {
    if f.len() < 14 + 20 {
        return;
    }
    let ihl = (usize::from(f[14] & 0xf) * 4).clamp(20, 60);
    if f.len() < 14 + ihl {
        return;
    }
    f[24] = 0;
    f[25] = 0;
    let mut sum = 0u32;
    for w in f[14..14 + ihl].chunks(2) {
        sum += u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let c = !(sum as u16);
    f[24..26].copy_from_slice(&c.to_be_bytes());
}

pub fn net_user(data: &[u8]) {
    let mut stack = UserStack::new(None);
    let mut inp = Input::new(data);
    let mut frames = 0;
    while !inp.is_empty() && frames < 64 {
        frames += 1;
        let op = inp.u8();
        let n = usize::from(inp.u16() % 1600);
        let mut f = inp.bytes(n).to_vec();
        if op & 1 != 0 {
            fix_ip_checksum(&mut f);
        }
        if op & 2 != 0 {
            // The DHCP parser alone, on the frame's bytes as a BOOTP payload.
            if let Some(reply) = dhcp::reply(&f) {
                assert!(reply.len() <= 1500, "a {}-byte DHCP reply", reply.len());
            }
        }
        if !reaches_host(&f) {
            stack.handle_guest_frame(&f);
        }
        if op & 4 != 0 {
            let out = stack.poll();
            assert!(
                out.len() <= MAX_OUT_FRAMES,
                "{} frames from one poll",
                out.len()
            );
            for o in &out {
                assert!(
                    o.len() <= MAX_FRAME,
                    "a {}-byte frame to the guest",
                    o.len()
                );
            }
        }
        assert_eq!(stack.tcp_connections(), 0, "a host connection was opened");
    }
    let out = stack.poll();
    assert!(out.len() <= MAX_OUT_FRAMES);
}
