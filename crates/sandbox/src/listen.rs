//! Unix listening sockets for the VMM's servers (QMP, VNC): the path
//! appears only once the socket listens, so a client that waits for the
//! file to exist never meets a refused connection.

use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Bind and listen at `path`. A socket left there by an earlier run is
/// replaced (as QEMU does); any other kind of file is an error. The socket
/// is bound under a temporary name in the same directory and renamed into
/// place after `listen`; when that name would be too long for a socket
/// address, `path` is bound directly.
pub fn unix_listener(path: &Path) -> std::io::Result<UnixListener> {
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if m.file_type().is_socket() {
            let _ = std::fs::remove_file(path);
        }
    }
    let Some(tmp) = temporary_name(path) else {
        return UnixListener::bind(path);
    };
    let _ = std::fs::remove_file(&tmp);
    let l = UnixListener::bind(&tmp)?;
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(l)
}

/// The longest path a `sockaddr_un` holds (with its terminating NUL).
const SUN_PATH_MAX: usize = 107;

fn temporary_name(path: &Path) -> Option<PathBuf> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent()?;
    let name = format!(
        ".kite-{}-{}.sock",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let tmp = dir.join(name);
    (tmp.as_os_str().len() <= SUN_PATH_MAX && !path.exists()).then_some(tmp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn the_path_is_ready_to_connect_and_a_stale_socket_is_replaced() {
        let dir = std::env::temp_dir().join(format!("kite-listen-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("s.sock");
        let first = unix_listener(&p).unwrap();
        drop(first);
        assert!(p.exists(), "a dropped listener leaves its file");
        let l = unix_listener(&p).unwrap();
        UnixStream::connect(&p).unwrap();
        l.accept().unwrap();
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary name is left behind");
        let plain = dir.join("plain");
        std::fs::write(&plain, b"x").unwrap();
        assert!(
            unix_listener(&plain).is_err(),
            "a regular file is not replaced"
        );
        assert_eq!(std::fs::read(&plain).unwrap(), b"x");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
