//! A minimal DHCP server for the one guest of the user-mode network: it
//! answers DISCOVER with OFFER and REQUEST with ACK, always for 10.0.2.15/24
//! with router 10.0.2.2 and DNS server 10.0.2.3. Anything else is ignored.

use std::net::Ipv4Addr;

use super::{DNS_IP, GATEWAY_IP, GUEST_IP};

/// BOOTP fixed header length (up to and excluding the magic cookie).
const BOOTP_LEN: usize = 236;
const MAGIC: [u8; 4] = [99, 130, 83, 99];
const DISCOVER: u8 = 1;
const OFFER: u8 = 2;
const REQUEST: u8 = 3;
const ACK: u8 = 5;
const LEASE_SECONDS: u32 = 86400;

/// The DHCP message type option of a BOOTREQUEST, if the payload is one.
fn message_type(req: &[u8]) -> Option<u8> {
    if req.len() < BOOTP_LEN + 4 || req[0] != 1 || req[1] != 1 || req[2] != 6 {
        return None;
    }
    if req[BOOTP_LEN..BOOTP_LEN + 4] != MAGIC {
        return None;
    }
    let mut i = BOOTP_LEN + 4;
    while i < req.len() {
        match req[i] {
            0 => i += 1,
            255 => return None,
            code => {
                let len = *req.get(i + 1)? as usize;
                let value = req.get(i + 2..i + 2 + len)?;
                if code == 53 && len == 1 {
                    return Some(value[0]);
                }
                i += 2 + len;
            }
        }
    }
    None
}

/// The reply payload (BOOTP + options) to a guest's DHCP request, if any.
pub fn reply(req: &[u8]) -> Option<Vec<u8>> {
    let kind = match message_type(req)? {
        DISCOVER => OFFER,
        REQUEST => ACK,
        _ => return None,
    };
    let mut r = vec![0u8; BOOTP_LEN];
    r[0] = 2; // BOOTREPLY
    r[1] = 1; // Ethernet
    r[2] = 6;
    r[4..8].copy_from_slice(&req[4..8]); // xid
    r[10..12].copy_from_slice(&req[10..12]); // flags
    r[16..20].copy_from_slice(&GUEST_IP.octets()); // yiaddr
    r[20..24].copy_from_slice(&GATEWAY_IP.octets()); // siaddr
    r[28..44].copy_from_slice(&req[28..44]); // chaddr
    r.extend_from_slice(&MAGIC);
    let mut opt = |code: u8, value: &[u8]| {
        r.push(code);
        r.push(value.len() as u8);
        r.extend_from_slice(value);
    };
    opt(53, &[kind]);
    opt(54, &GATEWAY_IP.octets());
    opt(51, &LEASE_SECONDS.to_be_bytes());
    opt(1, &Ipv4Addr::new(255, 255, 255, 0).octets());
    opt(3, &GATEWAY_IP.octets());
    opt(6, &DNS_IP.octets());
    r.push(255);
    // Some clients want at least a 300-byte BOOTP message.
    if r.len() < 300 {
        r.resize(300, 0);
    }
    Some(r)
}
