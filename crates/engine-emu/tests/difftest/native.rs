//! The native runner: runs test cases on the host CPU in a forked child.
//!
//! The child maps the test, end and stub pages RWX at `TEST_ADDR..+STUB_SPAN`
//! and the data page at `DATA_ADDR` (MAP_FIXED_NOREPLACE), then for each case
//! copies the code, data and input state into place and calls the prologue
//! stub, which saves the host's callee-saved registers and FPU state, loads
//! every register from the input block (FXRSTOR64, POPFQ, 16 MOVs) and jumps
//! to the test code. The test code ends with `jmp END_ADDR`, where the
//! epilogue stores every register, RFLAGS and FXSAVE64 into the output block
//! and returns to Rust. 32-bit cases enter through a far jump to Linux's
//! 32-bit user code segment (0x23, with DS/ES loaded) and end with a jump to
//! `END32_ADDR`, whose far jump returns to the 64-bit epilogue.
//!
//! A fault inside the test code raises a signal; the handler (on an
//! alternate stack, since RSP is the test's) records the trap number the
//! kernel reports (the exception vector) and resumes at a recovery stub that
//! restores the host state and returns. The child allocates nothing after
//! `fork` (the test harness is multi-threaded); its results go to a shared
//! mapping. If the child dies anyway (or a case runs for over a second of
//! CPU time and SIGPROF ends it), the parent marks the case it was on as broken and forks
//! again for the rest.

use std::sync::atomic::{AtomicU64, Ordering};

use iced_x86::code_asm::*;

use super::{CpuState, Outcome, Result, DATA_ADDR, DATA_SIZE, END32_ADDR, END_ADDR, TEST_ADDR};
use super::{FX_OFF, GPR_OFF, RFLAGS_OFF};

/// Prologue stubs (called from Rust), for 64-bit and 32-bit test code.
const PROLOGUE_ADDR: u64 = TEST_ADDR + 0x2000;
const PROLOGUE32_ADDR: u64 = TEST_ADDR + 0x2400;
/// Where a faulting case resumes.
const RECOVER_ADDR: u64 = TEST_ADDR + 0x2800;
/// Input and output state blocks, the host's FXSAVE image, saved RSP.
const IN_ADDR: u64 = TEST_ADDR + 0x3000;
const OUT_ADDR: u64 = TEST_ADDR + 0x3400;
const HOST_FX_ADDR: u64 = TEST_ADDR + 0x3800;
const SAVED_RSP_ADDR: u64 = TEST_ADDR + 0x3c00;
const FAULT_ADDR: u64 = TEST_ADDR + 0x3c08;
/// Far pointers (m16:32) into 32-bit and back into 64-bit code.
const FAR32_ADDR: u64 = TEST_ADDR + 0x3c10;
const FAR64_ADDR: u64 = TEST_ADDR + 0x3c18;
/// Linux's flat user selectors: 32-bit code, 64-bit code, data.
const USER32_CS: u16 = 0x23;
const USER_CS: u16 = 0x33;
const USER_DS: u32 = 0x2b;
/// Test page, end page, stub page, state page.
const STUB_SPAN: usize = 0x4000;

/// One case's result in the shared mapping.
#[repr(C)]
struct Slot {
    /// 0: done, 1: exception in `vector`.
    status: u64,
    vector: u64,
    state: CpuState,
    data: [u8; DATA_SIZE],
}

/// The input of one case, as the child reads it.
pub struct Input<'a> {
    /// 64, or 32 for compatibility mode.
    pub bits: u32,
    pub code: &'a [u8],
    pub state: &'a CpuState,
    pub data: &'a [u8; DATA_SIZE],
}

/// Machine code of the stubs, assembled once in the parent.
pub struct Stubs {
    prologue: Vec<u8>,
    prologue32: Vec<u8>,
    end32: Vec<u8>,
    epilogue: Vec<u8>,
    recover: Vec<u8>,
}

const GPRS: [AsmRegister64; 16] = [
    rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15,
];

fn assemble(
    at: u64,
    f: impl FnOnce(&mut CodeAssembler) -> std::result::Result<(), IcedError>,
) -> Vec<u8> {
    let mut a = CodeAssembler::new(64).expect("64-bit assembler");
    f(&mut a).expect("stub assembles");
    a.assemble(at).expect("stub encodes")
}

/// Save the host state, load the input state, enter the test code (in
/// compatibility mode through a far jump for 32-bit code).
fn load_state(a: &mut CodeAssembler, compat: bool) -> std::result::Result<(), IcedError> {
    for r in [rbx, rbp, r12, r13, r14, r15] {
        a.push(r)?;
    }
    a.sub(rsp, 8)?;
    a.mov(qword_ptr(SAVED_RSP_ADDR), rsp)?;
    a.fxsave64(ptr(HOST_FX_ADDR))?;
    a.fxrstor64(ptr(IN_ADDR + FX_OFF))?;
    if compat {
        // 32-bit code uses DS/ES (null in a 64-bit Linux process).
        a.mov(eax, USER_DS)?;
        a.mov(ds, ax)?;
        a.mov(es, ax)?;
    }
    a.push(qword_ptr(IN_ADDR + RFLAGS_OFF))?;
    a.popfq()?;
    for (i, r) in GPRS.iter().enumerate() {
        a.mov(*r, qword_ptr(IN_ADDR + GPR_OFF + 8 * i as u64))?;
    }
    if compat {
        a.jmp(fword_ptr(FAR32_ADDR))
    } else {
        a.jmp(TEST_ADDR)
    }
}

/// Restore the host state after RSP was reloaded, and return `status`.
fn host_return(a: &mut CodeAssembler, status: u32) -> std::result::Result<(), IcedError> {
    a.fxrstor64(ptr(HOST_FX_ADDR))?;
    a.cld()?;
    a.mov(eax, status)?;
    a.add(rsp, 8)?;
    for r in [r15, r14, r13, r12, rbp, rbx] {
        a.pop(r)?;
    }
    a.ret()
}

impl Stubs {
    pub fn new() -> Stubs {
        let prologue = assemble(PROLOGUE_ADDR, |a| load_state(a, false));
        let prologue32 = assemble(PROLOGUE32_ADDR, |a| load_state(a, true));
        // 32-bit code at END32_ADDR: jmp far [FAR64] (FF /5, disp32).
        let mut end32 = vec![0xff, 0x2d];
        end32.extend_from_slice(&(FAR64_ADDR as u32).to_le_bytes());
        let epilogue = assemble(END_ADDR, |a| {
            for (i, r) in GPRS.iter().enumerate() {
                a.mov(qword_ptr(OUT_ADDR + GPR_OFF + 8 * i as u64), *r)?;
            }
            a.mov(rsp, qword_ptr(SAVED_RSP_ADDR))?;
            a.pushfq()?;
            a.pop(qword_ptr(OUT_ADDR + RFLAGS_OFF))?;
            a.fxsave64(ptr(OUT_ADDR + FX_OFF))?;
            host_return(a, 0)
        });
        let recover = assemble(RECOVER_ADDR, |a| {
            a.mov(rsp, qword_ptr(SAVED_RSP_ADDR))?;
            host_return(a, 1)
        });
        Stubs {
            prologue,
            prologue32,
            end32,
            epilogue,
            recover,
        }
    }
}

impl Default for Stubs {
    fn default() -> Self {
        Self::new()
    }
}

/// Signal handler in the child: record the trap number and resume at the
/// recovery stub, if the fault is in the test code.
extern "C" fn on_fault(sig: libc::c_int, _info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid ucontext_t for SA_SIGINFO handlers;
    // FAULT_ADDR is in the child's stub mapping.
    unsafe {
        let uc = ctx as *mut libc::ucontext_t;
        let gregs = &mut (*uc).uc_mcontext.gregs;
        let rip = gregs[libc::REG_RIP as usize] as u64;
        if !(TEST_ADDR..TEST_ADDR + STUB_SPAN as u64).contains(&rip) {
            // Not the test code: die, the parent reports it.
            libc::signal(sig, libc::SIG_DFL);
            return;
        }
        let trapno = gregs[libc::REG_TRAPNO as usize] as u64;
        std::ptr::write_volatile(FAULT_ADDR as *mut u64, trapno);
        gregs[libc::REG_RIP as usize] = RECOVER_ADDR as i64;
        // No single-stepping or alignment checks in the recovery stub.
        gregs[libc::REG_EFL as usize] &= !((1 << 8) | (1 << 18));
        // The recovery stub is 64-bit code (the fault may be in 32-bit code).
        let csgsfs = &mut gregs[libc::REG_CSGSFS as usize];
        *csgsfs = (*csgsfs & !0xffff) | i64::from(USER_CS);
    }
}

/// Map `len` bytes at exactly `addr` in the child.
///
/// # Safety
/// Only in the forked child; `addr` must be page aligned.
unsafe fn map_fixed(addr: u64, len: usize, prot: libc::c_int) -> bool {
    let p = libc::mmap(
        addr as *mut libc::c_void,
        len,
        prot,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
        -1,
        0,
    );
    p as u64 == addr
}

/// The child's work: never returns, allocates nothing.
///
/// # Safety
/// Only in the forked child; `slots` points at `inputs.len()` slots of the
/// shared mapping and `progress` into it.
unsafe fn child(
    stubs: &Stubs,
    inputs: &[Input],
    first: usize,
    slots: *mut Slot,
    progress: &AtomicU64,
) -> ! {
    let rwx = libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC;
    if !map_fixed(TEST_ADDR, STUB_SPAN, rwx)
        || !map_fixed(DATA_ADDR, DATA_SIZE, libc::PROT_READ | libc::PROT_WRITE)
    {
        libc::_exit(90);
    }
    let copy = |dst: u64, src: &[u8]| {
        std::ptr::copy_nonoverlapping(src.as_ptr(), dst as *mut u8, src.len());
    };
    copy(PROLOGUE_ADDR, &stubs.prologue);
    copy(PROLOGUE32_ADDR, &stubs.prologue32);
    copy(END32_ADDR, &stubs.end32);
    let far = |at: u64, off: u64, sel: u16| {
        let mut b = [0u8; 6];
        b[..4].copy_from_slice(&(off as u32).to_le_bytes());
        b[4..].copy_from_slice(&sel.to_le_bytes());
        std::ptr::copy_nonoverlapping(b.as_ptr(), at as *mut u8, 6);
    };
    far(FAR32_ADDR, TEST_ADDR, USER32_CS);
    far(FAR64_ADDR, END_ADDR, USER_CS);
    copy(END_ADDR, &stubs.epilogue);
    copy(RECOVER_ADDR, &stubs.recover);

    // An alternate signal stack: RSP belongs to the test when it faults.
    let alt_size = 1 << 16;
    let alt = libc::mmap(
        std::ptr::null_mut(),
        alt_size,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
        -1,
        0,
    );
    if alt == libc::MAP_FAILED {
        libc::_exit(91);
    }
    let alt_stack = libc::stack_t {
        ss_sp: alt,
        ss_flags: 0,
        ss_size: alt_size,
    };
    if libc::sigaltstack(&alt_stack, std::ptr::null_mut()) != 0 {
        libc::_exit(92);
    }
    for sig in [
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGFPE,
        libc::SIGILL,
        libc::SIGTRAP,
    ] {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_fault as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
            libc::_exit(93);
        }
    }

    let entry64: extern "C" fn() -> u64 = std::mem::transmute(PROLOGUE_ADDR as usize);
    let entry32: extern "C" fn() -> u64 = std::mem::transmute(PROLOGUE32_ADDR as usize);
    for (i, input) in inputs.iter().enumerate().skip(first) {
        progress.store(i as u64, Ordering::SeqCst);
        // A case that never reaches the end: SIGPROF after one second of
        // CPU time (not wall time: the machine may be busy) kills the child;
        // the parent reports the case and goes on with the next.
        let limit = libc::itimerval {
            it_interval: libc::timeval {
                tv_sec: 0,
                tv_usec: 0,
            },
            it_value: libc::timeval {
                tv_sec: 1,
                tv_usec: 0,
            },
        };
        libc::setitimer(libc::ITIMER_PROF, &limit, std::ptr::null_mut());
        let n = input.code.len().min(0x1000);
        copy(TEST_ADDR, &input.code[..n]);
        copy(DATA_ADDR, &input.data[..]);
        std::ptr::copy_nonoverlapping(input.state, IN_ADDR as *mut CpuState, 1);
        let status = if input.bits == 32 {
            entry32()
        } else {
            entry64()
        };
        let slot = slots.add(i);
        (*slot).status = status;
        if status == 0 {
            std::ptr::copy_nonoverlapping(OUT_ADDR as *const CpuState, &mut (*slot).state, 1);
            std::ptr::copy_nonoverlapping(
                DATA_ADDR as *const u8,
                (*slot).data.as_mut_ptr(),
                DATA_SIZE,
            );
        } else {
            (*slot).vector = std::ptr::read_volatile(FAULT_ADDR as *const u64);
        }
    }
    progress.store(inputs.len() as u64, Ordering::SeqCst);
    libc::_exit(0)
}

/// A shared anonymous mapping, unmapped on drop.
struct Shared {
    ptr: *mut u8,
    len: usize,
}

impl Shared {
    fn new(len: usize) -> Shared {
        // SAFETY: a fresh anonymous mapping; checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "mmap of the result area failed");
        Shared {
            ptr: p as *mut u8,
            len,
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: mapped in `new` with this length.
        unsafe {
            libc::munmap(self.ptr as *mut libc::c_void, self.len);
        }
    }
}

/// Run `inputs` on the host CPU; one result per input.
pub fn run(stubs: &Stubs, inputs: &[Input]) -> Vec<Result> {
    let n = inputs.len();
    let header = 4096;
    let shared = Shared::new(header + n.max(1) * std::mem::size_of::<Slot>());
    // SAFETY: the header page holds the progress counter; slots follow.
    let progress = unsafe { &*(shared.ptr as *const AtomicU64) };
    let slots = unsafe { shared.ptr.add(header) as *mut Slot };
    let mut broken: Vec<(usize, String)> = Vec::new();
    let mut first = 0usize;
    while first < n {
        progress.store(first as u64, Ordering::SeqCst);
        // SAFETY: the child only runs `child`, which allocates nothing and
        // ends with _exit; the parent waits for it below.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // SAFETY: we are the child; slots/progress point into the shared mapping.
            unsafe { child(stubs, inputs, first, slots, progress) }
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(r, pid, "waitpid failed");
        let at = progress.load(Ordering::SeqCst) as usize;
        if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
            break;
        }
        let why = if libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGPROF {
            "the case ran for over a second of CPU time natively".to_string()
        } else if libc::WIFSIGNALED(status) {
            format!("native child killed by signal {}", libc::WTERMSIG(status))
        } else {
            format!(
                "native child exited with status {} (setup failed)",
                libc::WEXITSTATUS(status)
            )
        };
        if libc::WIFEXITED(status) && at == first && at < n && libc::WEXITSTATUS(status) >= 90 {
            // Setup failed: every remaining case is broken.
            for i in first..n {
                broken.push((i, why.clone()));
            }
            break;
        }
        if at < n {
            broken.push((at, why));
        }
        first = at + 1;
    }
    (0..n)
        .map(|i| {
            if let Some((_, why)) = broken.iter().find(|(j, _)| *j == i) {
                return Result {
                    outcome: Outcome::Broken(why.clone()),
                    state: *inputs[i].state,
                    data: Box::new(*inputs[i].data),
                };
            }
            // SAFETY: slot i was written by the child (it got past case i).
            let slot = unsafe { &*slots.add(i) };
            if slot.status == 0 {
                Result {
                    outcome: Outcome::Done,
                    state: slot.state,
                    data: Box::new(slot.data),
                }
            } else {
                Result {
                    outcome: Outcome::Exception(slot.vector as u8),
                    state: *inputs[i].state,
                    data: Box::new(*inputs[i].data),
                }
            }
        })
        .collect()
}
