//! The allow-lists' building blocks: each group is the set of calls one
//! concern needs (the Rust runtime, spawning threads, files, sockets, KVM),
//! with arguments pinned where a call would otherwise open a door (no
//! PROT_EXEC mappings, only thread clones, KVM/terminal/TUN ioctls only,
//! internet and Unix sockets only). It knows nothing of which role uses which.

use libc::*;

use super::allow_list::{AllowList, Arg};
use super::kvm_ioctls;

// Terminal and fd ioctls (asm-generic/ioctls.h).
const TCGETS: u64 = 0x5401;
const TCSETS: u64 = 0x5402;
const TCSETSW: u64 = 0x5403;
const TCSETSF: u64 = 0x5404;
const TIOCGWINSZ: u64 = 0x5413;
const FIONBIO: u64 = 0x5421;
const FIOCLEX: u64 = 0x5451;
const FIONCLEX: u64 = 0x5450;
const FIONREAD: u64 = 0x541b;
/// `_IOW('T', 202, int)` (linux/if_tun.h).
const TUNSETIFF: u64 = 0x4004_54ca;

/// What every thread needs: the allocator, locks, clocks, plain I/O on the
/// descriptors it was handed, signals (the vCPU kick, the terminal
/// restorer, the SIGSYS report itself) and ending.
pub(crate) fn runtime(l: &mut AllowList, pid: u64) {
    l.any(&[
        SYS_read,
        SYS_write,
        SYS_readv,
        SYS_writev,
        SYS_pread64,
        SYS_pwrite64,
        SYS_preadv,
        SYS_pwritev,
        SYS_preadv2,
        SYS_pwritev2,
        SYS_lseek,
        SYS_close,
        SYS_fstat,
        SYS_newfstatat,
        SYS_statx,
        SYS_futex,
        SYS_sched_yield,
        SYS_sched_getaffinity,
        SYS_munmap,
        SYS_mremap,
        SYS_madvise,
        SYS_brk,
        SYS_clock_gettime,
        SYS_clock_getres,
        SYS_gettimeofday,
        SYS_nanosleep,
        SYS_clock_nanosleep,
        SYS_rt_sigreturn,
        SYS_rt_sigprocmask,
        SYS_sigaltstack,
        SYS_restart_syscall,
        SYS_exit,
        SYS_exit_group,
        SYS_getpid,
        SYS_gettid,
        SYS_getrandom,
        SYS_poll,
        SYS_ppoll,
        // A panic's report under RUST_BACKTRACE shortens paths by the cwd.
        SYS_getcwd,
    ]);
    // Memory, never executable.
    l.when(SYS_mmap, &[Arg::masked(2, PROT_EXEC as u64, 0)]);
    l.when(SYS_mprotect, &[Arg::masked(2, PROT_EXEC as u64, 0)]);
    // Handlers may change, but never the one reporting forbidden calls.
    l.when(SYS_rt_sigaction, &[Arg::ne(0, SIGSYS as u64)]);
    // Signals only within this process (the vCPU kick, raise()).
    l.when(SYS_tgkill, &[Arg::eq(0, pid)]);
    l.when_arg_in(SYS_prctl, 0, &[PR_GET_NAME as u64]);
    l.when_arg_in(
        SYS_fcntl,
        1,
        &[
            F_GETFL as u64,
            F_SETFL as u64,
            F_GETFD as u64,
            F_SETFD as u64,
            F_DUPFD_CLOEXEC as u64,
        ],
    );
    l.when_arg_in(
        SYS_ioctl,
        1,
        &[
            TCGETS, TCSETS, TCSETSW, TCSETSF, TIOCGWINSZ, FIONBIO, FIOCLEX, FIONCLEX, FIONREAD,
        ],
    );
}

/// Starting threads that then install their own filter: clone only with
/// CLONE_THREAD (no new processes; clone3 is answered ENOSYS before the
/// allow-list, so the C library falls back to clone).
pub(crate) fn threads(l: &mut AllowList) {
    l.when(
        SYS_clone,
        &[Arg::masked(0, CLONE_THREAD as u64, CLONE_THREAD as u64)],
    );
    l.any(&[SYS_set_robust_list, SYS_rseq]);
    l.when_arg_in(SYS_prctl, 0, &[PR_SET_NAME as u64]);
    l.when(
        SYS_prctl,
        &[Arg::eq(0, PR_SET_NO_NEW_PRIVS as u64), Arg::eq64(1, 1)],
    );
    l.when_arg_in(SYS_seccomp, 0, &[SECCOMP_SET_MODE_FILTER as u64]);
}

/// Writing guest disks: flushes; discard and write-zeroes as hole punching
/// or zero ranges that keep the image's size (never growing it).
pub(crate) fn storage(l: &mut AllowList) {
    l.any(&[SYS_fsync, SYS_fdatasync]);
    l.when_arg_in(
        SYS_fallocate,
        1,
        &[
            (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE) as u64,
            (FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE) as u64,
        ],
    );
}

/// Calls the C library makes on its own in any thread and copes with being
/// refused: glibc's malloc opens /proc/sys/vm/overcommit_memory the first
/// time it shrinks a thread's heap. Listed here so that the role filter
/// lets them through; the answers in front of it (`super::answers`) say
/// EACCES first.
pub(crate) const REFUSED_QUIETLY: &[libc::c_long] = &[SYS_openat];

pub(crate) fn refused_quietly(l: &mut AllowList) {
    l.any(REFUSED_QUIETLY);
}

/// Opening and creating files by path (a reset reloads the kernel and
/// reopens disks; screenshots are written), and the calls around that.
pub(crate) fn files(l: &mut AllowList) {
    l.any(&[
        SYS_openat,
        SYS_flock,
        SYS_unlink,
        SYS_unlinkat,
        SYS_rename,
        SYS_renameat,
        SYS_renameat2,
    ]);
}

/// Serving connections on listeners opened at set-up.
pub(crate) fn serve(l: &mut AllowList) {
    l.any(&[
        SYS_accept,
        SYS_accept4,
        SYS_recvfrom,
        SYS_recvmsg,
        SYS_sendto,
        SYS_sendmsg,
        SYS_shutdown,
        SYS_setsockopt,
        SYS_getsockopt,
        SYS_getpeername,
        SYS_getsockname,
    ]);
}

/// Opening sockets: Unix, IPv4 and IPv6, stream or datagram only (no raw
/// sockets, even as root; no netlink, packet...).
pub(crate) fn connect(l: &mut AllowList) {
    serve(l);
    // The type argument carries SOCK_NONBLOCK/SOCK_CLOEXEC above its low bits.
    const SOCK_TYPE_MASK: u64 = 0xf;
    for family in [AF_UNIX, AF_INET, AF_INET6] {
        for kind in [SOCK_STREAM, SOCK_DGRAM] {
            l.when(
                SYS_socket,
                &[
                    Arg::eq(0, family as u64),
                    Arg::masked(1, SOCK_TYPE_MASK, kind as u64),
                ],
            );
        }
    }
    l.any(&[SYS_connect, SYS_bind, SYS_listen]);
}

/// Attaching a TAP device (the network at each boot).
pub(crate) fn tun(l: &mut AllowList) {
    l.when_arg_in(SYS_ioctl, 1, &[TUNSETIFF]);
}

/// Any KVM ioctl (creating VMs and vCPUs at each boot).
pub(crate) fn kvm_any(l: &mut AllowList) {
    l.when(
        SYS_ioctl,
        &[Arg::masked(
            1,
            kvm_ioctls::KVM_IOCTL_TYPE_MASK,
            kvm_ioctls::KVM_IOCTL_TYPE,
        )],
    );
}

/// The emu engine's code-generating tier: its translation cache is mapped
/// read-write (as any memory) and each page made read+execute once code is
/// written, so exactly PROT_READ|PROT_EXEC may be asked of mprotect, never
/// with PROT_WRITE (W^X holds) and never by mmap.
pub(crate) fn emu_translations(l: &mut AllowList) {
    l.when(SYS_mprotect, &[Arg::eq(2, (PROT_READ | PROT_EXEC) as u64)]);
}

/// The ioctls a vCPU thread issues on its vCPU.
pub(crate) fn kvm_vcpu(l: &mut AllowList) {
    l.when_arg_in(SYS_ioctl, 1, kvm_ioctls::VCPU);
}

/// The VM ioctls a snapshot reads (irqchip, PIT, clock).
pub(crate) fn kvm_vm_state(l: &mut AllowList) {
    l.when_arg_in(SYS_ioctl, 1, kvm_ioctls::VM_STATE);
}

/// The VM ioctls device models issue (interrupts, MSI, BAR slots, dirty log).
pub(crate) fn kvm_vm_device(l: &mut AllowList) {
    l.when_arg_in(SYS_ioctl, 1, kvm_ioctls::VM_DEVICE);
}
