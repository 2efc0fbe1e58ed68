//! What the filters cost per system call: times a vCPU thread's hottest
//! calls (ioctl KVM_RUN, here on a bad descriptor so it returns at once;
//! write to /dev/null) without a filter, then under the main thread's and a
//! KVM vCPU's filters stacked as in a running Kite.
//!
//! `cargo run --release -p kite-sandbox --example filter_cost`

use std::time::Instant;

use kite_sandbox::{Engine, Mode, Role};

const CALLS: u32 = 2_000_000;
const KVM_RUN: libc::c_ulong = 0xae80;

fn time_calls(what: &str, fd: i32) -> f64 {
    let start = Instant::now();
    for _ in 0..CALLS {
        // SAFETY: an ioctl on descriptor -1 only fails with EBADF.
        unsafe { libc::ioctl(-1, KVM_RUN) };
    }
    let ioctl = start.elapsed().as_nanos() as f64 / f64::from(CALLS);
    let start = Instant::now();
    for _ in 0..CALLS {
        // SAFETY: a one-byte write from a valid buffer to /dev/null.
        unsafe { libc::write(fd, b"x".as_ptr().cast(), 1) };
    }
    let write = start.elapsed().as_nanos() as f64 / f64::from(CALLS);
    println!("{what:>28}: ioctl(KVM_RUN) {ioctl:6.1} ns, write {write:6.1} ns");
    ioctl
}

fn main() {
    let null = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .expect("/dev/null");
    let fd = std::os::fd::AsRawFd::as_raw_fd(&null);
    let bare = std::thread::spawn(move || time_calls("no filter", fd))
        .join()
        .expect("thread");
    kite_sandbox::enable(Mode::On).expect("enable");
    kite_sandbox::apply(Role::Main).expect("main filter");
    let filtered = std::thread::spawn(move || {
        kite_sandbox::apply(Role::Vcpu(Engine::Kvm)).expect("vcpu filter");
        time_calls("main + vcpu(kvm) filters", fd)
    })
    .join()
    .expect("thread");
    println!("filter cost per ioctl: {:.1} ns", filtered - bare);
}
