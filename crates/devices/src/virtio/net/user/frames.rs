//! Building the frames the user-mode network sends to the guest outside
//! smoltcp (DHCP replies, relayed UDP datagrams): Ethernet + IPv4 + UDP.

use std::net::Ipv4Addr;

use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, IpAddress,
    IpProtocol, Ipv4Packet, UdpPacket,
};

const ETH_HDR: usize = 14;
const IP_HDR: usize = 20;
const UDP_HDR: usize = 8;
/// The largest UDP payload that fits a 1500-byte MTU.
pub const MAX_UDP_PAYLOAD: usize = 1500 - IP_HDR - UDP_HDR;

/// One end of a UDP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpEnd {
    pub mac: EthernetAddress,
    pub ip: Ipv4Addr,
    pub port: u16,
}

/// An Ethernet frame carrying `payload` from `src` to `dst`, or None when the
/// payload does not fit one frame.
pub fn udp_frame(src: UdpEnd, dst: UdpEnd, payload: &[u8]) -> Option<Vec<u8>> {
    if payload.len() > MAX_UDP_PAYLOAD {
        return None;
    }
    let udp_len = UDP_HDR + payload.len();
    let mut buf = vec![0u8; ETH_HDR + IP_HDR + udp_len];
    let mut eth = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.set_src_addr(src.mac);
    eth.set_dst_addr(dst.mac);
    eth.set_ethertype(EthernetProtocol::Ipv4);
    let mut ip = Ipv4Packet::new_unchecked(&mut buf[ETH_HDR..]);
    ip.set_version(4);
    ip.set_header_len(IP_HDR as u8);
    ip.set_dscp(0);
    ip.set_ecn(0);
    ip.set_total_len((IP_HDR + udp_len) as u16);
    ip.set_ident(0);
    ip.clear_flags();
    ip.set_dont_frag(true);
    ip.set_frag_offset(0);
    ip.set_hop_limit(64);
    ip.set_next_header(IpProtocol::Udp);
    ip.set_src_addr(src.ip);
    ip.set_dst_addr(dst.ip);
    ip.fill_checksum();
    let mut udp = UdpPacket::new_unchecked(&mut buf[ETH_HDR + IP_HDR..]);
    udp.set_src_port(src.port);
    udp.set_dst_port(dst.port);
    udp.set_len(udp_len as u16);
    udp.payload_mut().copy_from_slice(payload);
    udp.fill_checksum(&IpAddress::Ipv4(src.ip), &IpAddress::Ipv4(dst.ip));
    Some(buf)
}

/// An ARP reply from the guest (10.0.2.15 is at `guest_mac`) to the gateway,
/// fed to smoltcp when the guest's MAC address is learned.
pub fn arp_reply_from_guest(guest_mac: EthernetAddress) -> Vec<u8> {
    let gateway = EthernetAddress(super::GATEWAY_MAC);
    let repr = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Reply,
        source_hardware_addr: guest_mac,
        source_protocol_addr: super::GUEST_IP,
        target_hardware_addr: gateway,
        target_protocol_addr: super::GATEWAY_IP,
    };
    let mut buf = vec![0u8; ETH_HDR + repr.buffer_len()];
    let mut eth = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.set_src_addr(guest_mac);
    eth.set_dst_addr(gateway);
    eth.set_ethertype(EthernetProtocol::Arp);
    repr.emit(&mut ArpPacket::new_unchecked(&mut buf[ETH_HDR..]));
    buf
}
