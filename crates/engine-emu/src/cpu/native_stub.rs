//! Test support: run a stub of host machine code (assembled by a test) on
//! the host CPU, with a pointer to the test's state block in RDI. The x87
//! and SSE groups use it as the oracle for their instruction tests.

/// Copy `code` into a fresh executable mapping and call it as
/// `extern "C" fn(*mut S)`. The stub must follow the C ABI (clobber only
/// caller-saved registers, leave the x87 unit and MXCSR as it found them)
/// and touch memory only through the state pointer.
pub fn run<S>(code: &[u8], state: &mut S) {
    assert!(code.len() <= 4096, "native stub larger than its page");
    // SAFETY: a private anonymous mapping, written then executed by this
    // thread only, unmapped after the call; the caller guarantees the stub
    // keeps the ABI and only uses memory through the pointer it is given.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(
            p,
            libc::MAP_FAILED,
            "cannot map writable+executable memory for the native stub"
        );
        std::ptr::copy_nonoverlapping(code.as_ptr(), p as *mut u8, code.len());
        let f: extern "C" fn(*mut S) = std::mem::transmute(p);
        f(state as *mut S);
        libc::munmap(p, 4096);
    }
}
