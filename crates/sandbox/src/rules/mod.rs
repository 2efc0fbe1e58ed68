//! The filters: which groups of calls each role may make (see
//! docs/SANDBOX.md for the why), compiled to BPF. It does not install them.

mod allow_list;
mod answers;
mod groups;
mod kvm_ioctls;

use seccompiler::{BpfProgram, SeccompAction};

use crate::{Engine, Mode, Role, SandboxError};
use allow_list::AllowList;

/// The allow-list of `role` in a process whose id is `pid`; `codegen`:
/// the emu engine generates code (see `groups::emu_translations`), which
/// the main thread's list must allow too, as it bounds the vCPU threads.
pub(crate) fn allow_list(role: Role, pid: u64, codegen: bool) -> AllowList {
    let mut l = AllowList::default();
    // Rules are tried in order: a KVM vCPU's KVM_RUN first.
    if role == Role::Vcpu(Engine::Kvm) {
        groups::kvm_vcpu(&mut l);
    }
    groups::runtime(&mut l, pid);
    if codegen && matches!(role, Role::Main | Role::Vcpu(Engine::Emu)) {
        groups::emu_translations(&mut l);
    }
    match role {
        Role::Main => {
            groups::threads(&mut l);
            groups::storage(&mut l);
            groups::files(&mut l);
            groups::connect(&mut l);
            groups::tun(&mut l);
            groups::kvm_any(&mut l);
        }
        Role::Vcpu(_) => {
            groups::refused_quietly(&mut l);
            groups::storage(&mut l);
            groups::kvm_vm_device(&mut l);
        }
        Role::Net => {
            groups::refused_quietly(&mut l);
            groups::connect(&mut l);
            groups::kvm_vm_device(&mut l);
        }
        Role::Console | Role::Timer => {
            groups::refused_quietly(&mut l);
            groups::kvm_vm_device(&mut l);
        }
        Role::Vnc => {
            groups::refused_quietly(&mut l);
            groups::threads(&mut l);
            groups::serve(&mut l);
            groups::kvm_vm_device(&mut l);
        }
        Role::Qmp => {
            groups::threads(&mut l);
            groups::files(&mut l);
            groups::storage(&mut l);
            groups::connect(&mut l);
            groups::kvm_vm_device(&mut l);
            groups::kvm_vm_state(&mut l);
        }
        Role::Gdb => {
            groups::refused_quietly(&mut l);
            groups::serve(&mut l);
        }
    }
    l
}

/// Whether `role` opens files itself (Main, Qmp); the others have openat
/// answered EACCES.
fn opens_files(role: Role) -> bool {
    matches!(role, Role::Main | Role::Qmp)
}

/// The calls `role`'s filter answers with an error: clone3 ENOSYS (its flags
/// sit in memory, out of a filter's sight, so the C library falls back to
/// clone, whose flags the allow-list checks); for a role that opens no
/// files, openat EACCES (allowed and logged under `log`) rather than a trap,
/// because the C library probes files on its own (see
/// `groups::REFUSED_QUIETLY`) and copes with a refusal.
fn answers(role: Role, mode: Mode) -> Vec<(libc::c_long, u32)> {
    let mut a = vec![(
        libc::SYS_clone3,
        answers::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
    )];
    if !opens_files(role) {
        let refuse = if mode == Mode::Log {
            answers::SECCOMP_RET_LOG
        } else {
            answers::SECCOMP_RET_ERRNO | libc::EACCES as u32
        };
        a.extend(groups::REFUSED_QUIETLY.iter().map(|&nr| (nr, refuse)));
    }
    a
}

/// The BPF program for `role`: its answers, then its allow-list; a call on
/// neither traps (on) or is logged and allowed (log).
pub(crate) fn program(
    role: Role,
    mode: Mode,
    pid: u64,
    codegen: bool,
) -> Result<BpfProgram, SandboxError> {
    let otherwise = if mode == Mode::Log {
        SeccompAction::Log
    } else {
        SeccompAction::Trap
    };
    let list = allow_list(role, pid, codegen)
        .compile(otherwise)
        .map_err(|source| SandboxError::Build {
            role: role.name(),
            source,
        })?;
    Ok(answers::prepend(&answers(role, mode), list))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLES: [Role; 9] = [
        Role::Main,
        Role::Vcpu(Engine::Kvm),
        Role::Vcpu(Engine::Emu),
        Role::Net,
        Role::Console,
        Role::Timer,
        Role::Vnc,
        Role::Qmp,
        Role::Gdb,
    ];

    const ALLOW: u32 = 0x7fff_0000;
    const TRAP: u32 = 0x0003_0000;
    const LOG: u32 = 0x7ffc_0000;

    fn verdict(role: Role, mode: Mode, nr: libc::c_long, args: [u64; 6]) -> u32 {
        let p = program(role, mode, 1234, false).expect("compiles");
        answers::verdict(&p, nr, args)
    }

    #[test]
    fn every_role_compiles_in_both_modes() {
        for role in ROLES {
            for mode in [Mode::On, Mode::Log] {
                let p = program(role, mode, 1234, false).expect("compiles");
                assert!(!p.is_empty() && p.len() < 4096, "{role:?}: {}", p.len());
            }
        }
    }

    #[test]
    fn the_programs_answer_as_documented() {
        let none = [0u64; 6];
        let kvm_run = [0, 0xae80, 0, 0, 0, 0];
        for role in ROLES {
            assert_eq!(
                verdict(role, Mode::On, libc::SYS_read, none),
                ALLOW,
                "{role:?}"
            );
            assert_eq!(
                verdict(role, Mode::On, libc::SYS_ptrace, none),
                TRAP,
                "{role:?}"
            );
            assert_eq!(
                verdict(role, Mode::Log, libc::SYS_ptrace, none),
                LOG,
                "{role:?}"
            );
            assert_eq!(
                verdict(role, Mode::On, libc::SYS_clone3, none),
                0x0005_0000 | libc::ENOSYS as u32,
                "{role:?}"
            );
            let open = verdict(role, Mode::On, libc::SYS_openat, none);
            if matches!(role, Role::Main | Role::Qmp) {
                assert_eq!(open, ALLOW, "{role:?}");
            } else {
                assert_eq!(open, 0x0005_0000 | libc::EACCES as u32, "{role:?}");
            }
            // Executable memory, anywhere.
            let rwx = [0, 4096, (libc::PROT_READ | libc::PROT_EXEC) as u64, 0, 0, 0];
            assert_eq!(
                verdict(role, Mode::On, libc::SYS_mmap, rwx),
                TRAP,
                "{role:?}"
            );
            assert_eq!(
                verdict(role, Mode::On, libc::SYS_mprotect, rwx),
                TRAP,
                "{role:?}"
            );
            let wx = [
                0,
                4096,
                (libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC) as u64,
                0,
                0,
                0,
            ];
            assert_eq!(
                verdict(role, Mode::On, libc::SYS_mprotect, wx),
                TRAP,
                "{role:?}"
            );
            let x = [0, 4096, libc::PROT_EXEC as u64, 0, 0, 0];
            assert_eq!(
                verdict(role, Mode::On, libc::SYS_mprotect, x),
                TRAP,
                "{role:?}"
            );
            let rw = [
                0,
                4096,
                (libc::PROT_READ | libc::PROT_WRITE) as u64,
                0,
                0,
                0,
            ];
            assert_eq!(
                verdict(role, Mode::On, libc::SYS_mmap, rw),
                ALLOW,
                "{role:?}"
            );
            // The reporter's handler cannot be replaced.
            let sigsys = [libc::SIGSYS as u64, 0, 0, 0, 0, 0];
            assert_eq!(
                verdict(role, Mode::On, libc::SYS_rt_sigaction, sigsys),
                TRAP
            );
            // Signals only within this process.
            assert_eq!(
                verdict(role, Mode::On, libc::SYS_tgkill, [1234, 1, 34, 0, 0, 0]),
                ALLOW
            );
            assert_eq!(
                verdict(role, Mode::On, libc::SYS_tgkill, [1, 1, 9, 0, 0, 0]),
                TRAP
            );
            // KVM_RUN only on a KVM vCPU (and Main, which any KVM ioctl passes).
            let run = verdict(role, Mode::On, libc::SYS_ioctl, kvm_run);
            let may_run = matches!(role, Role::Main | Role::Vcpu(Engine::Kvm));
            assert_eq!(run == ALLOW, may_run, "{role:?}");
        }
        // New processes never; threads only where listed.
        let fork = [libc::SIGCHLD as u64, 0, 0, 0, 0, 0];
        let thread = [
            (libc::CLONE_VM | libc::CLONE_THREAD | libc::CLONE_SIGHAND) as u64,
            0,
            0,
            0,
            0,
            0,
        ];
        assert_eq!(verdict(Role::Main, Mode::On, libc::SYS_clone, fork), TRAP);
        assert_eq!(
            verdict(Role::Main, Mode::On, libc::SYS_clone, thread),
            ALLOW
        );
        assert_eq!(
            verdict(Role::Timer, Mode::On, libc::SYS_clone, thread),
            TRAP
        );
        // Socket families.
        let inet = [libc::AF_INET as u64, libc::SOCK_STREAM as u64, 0, 0, 0, 0];
        let udp = [
            libc::AF_INET6 as u64,
            (libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) as u64,
            0,
            0,
            0,
            0,
        ];
        let raw = [libc::AF_INET as u64, libc::SOCK_RAW as u64, 0, 0, 0, 0];
        let packet = [libc::AF_PACKET as u64, libc::SOCK_RAW as u64, 0, 0, 0, 0];
        let netlink = [libc::AF_NETLINK as u64, libc::SOCK_RAW as u64, 0, 0, 0, 0];
        assert_eq!(verdict(Role::Net, Mode::On, libc::SYS_socket, inet), ALLOW);
        assert_eq!(verdict(Role::Net, Mode::On, libc::SYS_socket, udp), ALLOW);
        assert_eq!(verdict(Role::Net, Mode::On, libc::SYS_socket, raw), TRAP);
        assert_eq!(verdict(Role::Net, Mode::On, libc::SYS_socket, packet), TRAP);
        assert_eq!(
            verdict(Role::Main, Mode::On, libc::SYS_socket, netlink),
            TRAP
        );
        assert_eq!(verdict(Role::Vnc, Mode::On, libc::SYS_socket, inet), TRAP);
        // An ioctl that is no KVM, terminal or TUN request.
        let other = [0, 0x8912, 0, 0, 0, 0]; // SIOCGIFCONF
        assert_eq!(verdict(Role::Main, Mode::On, libc::SYS_ioctl, other), TRAP);
    }

    #[test]
    fn no_role_may_exec_trace_or_fork() {
        for role in ROLES {
            let l = allow_list(role, 1, false);
            for nr in [
                libc::SYS_execve,
                libc::SYS_execveat,
                libc::SYS_fork,
                libc::SYS_vfork,
                libc::SYS_ptrace,
                libc::SYS_process_vm_writev,
                libc::SYS_mount,
                libc::SYS_kexec_load,
                libc::SYS_bpf,
            ] {
                assert!(!l.mentions(nr), "{role:?} allows {nr}");
            }
        }
    }

    #[test]
    fn only_the_spawning_roles_may_clone_or_open() {
        for role in [
            Role::Vcpu(Engine::Kvm),
            Role::Net,
            Role::Console,
            Role::Timer,
        ] {
            let l = allow_list(role, 1, false);
            assert!(!l.mentions(libc::SYS_clone), "{role:?}");
            assert!(!l.mentions(libc::SYS_seccomp), "{role:?}");
        }
        assert!(!allow_list(Role::Vnc, 1, false).mentions(libc::SYS_socket));
        assert!(allow_list(Role::Main, 1, false).mentions(libc::SYS_clone));
    }

    /// With the emu engine's code generation on, the main thread and the
    /// emu vCPU (bounded by it) may mprotect to exactly PROT_READ|PROT_EXEC;
    /// nothing may map executable memory or make it writable and
    /// executable, and the other roles stay as they were.
    #[test]
    fn code_generation_allows_exactly_read_execute() {
        let prot = |p: i32| [0, 4096, p as u64, 0, 0, 0];
        let rx = prot(libc::PROT_READ | libc::PROT_EXEC);
        for role in ROLES {
            let p = program(role, Mode::On, 1234, true).expect("compiles");
            let v = |nr, args| answers::verdict(&p, nr, args);
            let may = matches!(role, Role::Main | Role::Vcpu(Engine::Emu));
            assert_eq!(
                v(libc::SYS_mprotect, rx),
                if may { ALLOW } else { TRAP },
                "{role:?}"
            );
            for bad in [
                libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                libc::PROT_EXEC,
                libc::PROT_WRITE | libc::PROT_EXEC,
            ] {
                assert_eq!(v(libc::SYS_mprotect, prot(bad)), TRAP, "{role:?} {bad:#x}");
            }
            assert_eq!(v(libc::SYS_mmap, rx), TRAP, "{role:?}");
            assert_eq!(
                v(libc::SYS_mprotect, prot(libc::PROT_READ | libc::PROT_WRITE)),
                ALLOW,
                "{role:?}"
            );
        }
    }
}
