//! The filters: which groups of calls each role may make (see
//! docs/SANDBOX.md for the why), compiled to BPF. It does not install them.

mod allow_list;
mod groups;
mod kvm_ioctls;

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};

use crate::{Engine, Mode, Role, SandboxError};
use allow_list::AllowList;

/// The allow-list of `role` in a process whose id is `pid`.
pub(crate) fn allow_list(role: Role, pid: u64) -> AllowList {
    let mut l = AllowList::default();
    groups::runtime(&mut l, pid);
    match role {
        Role::Main => {
            groups::threads(&mut l);
            groups::storage(&mut l);
            groups::files(&mut l);
            groups::connect(&mut l);
            groups::tun(&mut l);
            groups::kvm_any(&mut l);
        }
        Role::Vcpu(engine) => {
            groups::refused_quietly(&mut l);
            groups::storage(&mut l);
            groups::kvm_vm_device(&mut l);
            if engine == Engine::Kvm {
                groups::kvm_vcpu(&mut l);
            }
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
            groups::serve(&mut l);
            groups::files(&mut l);
            groups::kvm_vm_device(&mut l);
        }
    }
    l
}

/// The BPF program for `role`: a forbidden call traps (on) or is logged (log).
pub(crate) fn program(role: Role, mode: Mode, pid: u64) -> Result<BpfProgram, SandboxError> {
    let otherwise = if mode == Mode::Log {
        SeccompAction::Log
    } else {
        SeccompAction::Trap
    };
    allow_list(role, pid)
        .compile(otherwise)
        .map_err(|source| SandboxError::Build {
            role: role.name(),
            source,
        })
}

/// Whether `role` opens files itself (Main, Qmp); the others have their
/// opens refused with EACCES by [`refusals`].
fn opens_files(role: Role) -> bool {
    matches!(role, Role::Main | Role::Qmp)
}

/// The filter installed beside the role's for a role that opens no files:
/// openat fails with EACCES (log mode: allowed and logged), everything else
/// passes. A refusal rather than a trap, because the C library probes files
/// on its own (see `groups::REFUSED_QUIETLY`) and copes with a refusal.
pub(crate) fn refusals(role: Role, mode: Mode) -> Result<Option<BpfProgram>, SandboxError> {
    if opens_files(role) {
        return Ok(None);
    }
    let build = |source| SandboxError::Build {
        role: role.name(),
        source,
    };
    let refuse = if mode == Mode::Log {
        SeccompAction::Log
    } else {
        SeccompAction::Errno(libc::EACCES as u32)
    };
    let rules = groups::REFUSED_QUIETLY
        .iter()
        .map(|&nr| (nr, Vec::new()))
        .collect();
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, refuse, TargetArch::x86_64)
        .map_err(build)?;
    filter.try_into().map(Some).map_err(build)
}

/// The process-wide first filter: clone3 answers ENOSYS (its flags sit in
/// memory, out of a filter's sight, so threads are made with clone, whose
/// flags the role filters check); everything else passes to the next filter.
pub(crate) fn no_clone3() -> Result<BpfProgram, SandboxError> {
    let build = |source| SandboxError::Build {
        role: "clone3",
        source,
    };
    let rules = [(libc::SYS_clone3, Vec::new())].into_iter().collect();
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        TargetArch::x86_64,
    )
    .map_err(build)?;
    filter.try_into().map_err(build)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLES: [Role; 8] = [
        Role::Main,
        Role::Vcpu(Engine::Kvm),
        Role::Vcpu(Engine::Emu),
        Role::Net,
        Role::Console,
        Role::Timer,
        Role::Vnc,
        Role::Qmp,
    ];

    #[test]
    fn every_role_compiles_in_both_modes() {
        for role in ROLES {
            for mode in [Mode::On, Mode::Log] {
                let p = program(role, mode, 1234).expect("compiles");
                assert!(!p.is_empty() && p.len() < 4096, "{role:?}: {}", p.len());
            }
        }
        assert!(!no_clone3().expect("compiles").is_empty());
        for role in ROLES {
            let r = refusals(role, Mode::On).expect("compiles");
            assert_eq!(r.is_none(), matches!(role, Role::Main | Role::Qmp));
        }
    }

    #[test]
    fn no_role_may_exec_trace_or_fork() {
        for role in ROLES {
            let l = allow_list(role, 1);
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
            let l = allow_list(role, 1);
            assert!(!l.mentions(libc::SYS_clone), "{role:?}");
            // openat reaches only the refusals filter (EACCES).
            assert!(refusals(role, Mode::On).expect("compiles").is_some());
            assert!(!l.mentions(libc::SYS_seccomp), "{role:?}");
        }
        assert!(!allow_list(Role::Vnc, 1).mentions(libc::SYS_socket));
        assert!(allow_list(Role::Main, 1).mentions(libc::SYS_clone));
    }
}
