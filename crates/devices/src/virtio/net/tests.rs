//! Frames through the queues against a socket pair standing in for the tap.

use super::*;
use crate::virtio::chain::test_ring::*;
use std::os::fd::{FromRawFd, OwnedFd};
use vm_memory::{Bytes, GuestAddress};

fn pair() -> (Arc<Tap>, Tap) {
    let mut fds = [0i32; 2];
    // SAFETY: socketpair fills two descriptors that we then own.
    let r = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET, 0, fds.as_mut_ptr()) };
    assert_eq!(r, 0);
    // SAFETY: fresh descriptors from socketpair, owned once each.
    let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    (Arc::new(Tap::from_fd(a)), Tap::from_fd(b))
}

#[test]
fn transmit_strips_the_header_and_sends_the_frame() {
    let mem = memory();
    let (tap, host) = pair();
    let mut dev = NetDevice::new(tap, [2, 0, 0, 0, 0, 1]);
    let mut q = queue(&mem, 16);
    mem.write_slice(&[0u8; NET_HDR_LEN], GuestAddress(DATA))
        .unwrap();
    let frame: Vec<u8> = (0..60u8).collect();
    mem.write_slice(&frame, GuestAddress(DATA + 0x100)).unwrap();
    desc(&mem, 0, DATA, NET_HDR_LEN as u32, F_NEXT, 1);
    desc(&mem, 1, DATA + 0x100, 60, 0, 0);
    publish(&mem, 0, 0);
    assert!(dev.process_queue(TX_QUEUE, &mut q, &mem).unwrap());
    assert_eq!(used(&mem, 0), (1, 0, 0));
    let mut got = [0u8; 2048];
    let n = host.recv(&mut got).unwrap();
    assert_eq!(&got[..n], &frame[..]);
}

#[test]
fn receive_prepends_the_header_and_waits_for_buffers() {
    let mem = memory();
    let (tap, _host) = pair();
    let mut dev = NetDevice::new(tap, [2, 0, 0, 0, 0, 1]);
    let frames = dev.rx_frames();
    NetDevice::push_rx(&frames, vec![0xab; 100]);
    let mut q = queue(&mem, 16);
    // No buffers yet: the frame waits.
    assert!(!dev.process_queue(RX_QUEUE, &mut q, &mem).unwrap());
    assert_eq!(frames.lock().unwrap().len(), 1);
    desc(&mem, 0, DATA, 2048, F_WRITE, 0);
    publish(&mem, 0, 0);
    assert!(dev.process_queue(RX_QUEUE, &mut q, &mem).unwrap());
    assert_eq!(used(&mem, 0), (1, 0, 112));
    let mut hdr = [0u8; NET_HDR_LEN];
    mem.read_slice(&mut hdr, GuestAddress(DATA)).unwrap();
    assert_eq!(hdr[10], 1, "num_buffers");
    let mut body = [0u8; 100];
    mem.read_slice(&mut body, GuestAddress(DATA + 12)).unwrap();
    assert_eq!(body, [0xab; 100]);
    assert!(frames.lock().unwrap().is_empty());
}

#[test]
fn hostile_buffers_are_errors_or_drops() {
    let mem = memory();
    let (tap, host) = pair();
    let mut dev = NetDevice::new(tap, [2, 0, 0, 0, 0, 1]);
    let mut q = queue(&mem, 16);
    // A transmit buffer shorter than the header: dropped, still returned.
    desc(&mem, 0, DATA, 4, 0, 0);
    publish(&mem, 0, 0);
    assert!(dev.process_queue(TX_QUEUE, &mut q, &mem).unwrap());
    assert!(!host.wait_readable(0));
    // A huge transmit buffer: dropped.
    desc(&mem, 0, DATA, 0x20000, 0, 0);
    publish(&mem, 1, 0);
    assert!(dev.process_queue(TX_QUEUE, &mut q, &mem).unwrap());
    assert!(!host.wait_readable(0));
    // A buffer outside guest memory: an error.
    desc(&mem, 0, 1 << 40, 64, 0, 0);
    publish(&mem, 2, 0);
    assert!(dev.process_queue(TX_QUEUE, &mut q, &mem).is_err());
    // Receive buffer too small for the frame: returned empty.
    let mut q = queue(&mem, 16);
    mem.write_slice(&[0u8; 64], GuestAddress(USED)).unwrap();
    mem.write_slice(&[0u8; 64], GuestAddress(AVAIL)).unwrap();
    NetDevice::push_rx(&dev.rx_frames(), vec![1; 1000]);
    desc(&mem, 0, DATA, 64, F_WRITE, 0);
    publish(&mem, 0, 0);
    assert!(dev.process_queue(RX_QUEUE, &mut q, &mem).unwrap());
    assert_eq!(used(&mem, 0), (1, 0, 0));
}

#[test]
fn config_has_the_mac_and_link_up() {
    let (tap, _host) = pair();
    let dev = NetDevice::new(tap, [0x52, 0x54, 0, 0x12, 0x34, 0x56]);
    assert_eq!(
        dev.config_bytes(),
        vec![0x52, 0x54, 0, 0x12, 0x34, 0x56, 1, 0]
    );
    assert_ne!(dev.features() & (1 << 5), 0);
}
