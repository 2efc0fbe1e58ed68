//! Where a snapshot goes or comes from: `file:PATH` or `tcp:HOST:PORT`
//! (QEMU's spelling for `migrate` and `-incoming`).
//!
//! It must not know what is sent.

use std::path::PathBuf;

/// A parsed migration URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrationUri {
    File(PathBuf),
    /// Host and port as given (the host may be a name or an address).
    Tcp(String, u16),
}

impl MigrationUri {
    /// Parse `file:PATH` or `tcp:HOST:PORT` (`tcp:[v6]:PORT` too).
    pub fn parse(s: &str) -> Result<MigrationUri, String> {
        if let Some(path) = s.strip_prefix("file:") {
            if path.is_empty() {
                return Err(format!("{s:?}: file: needs a path"));
            }
            return Ok(MigrationUri::File(PathBuf::from(path)));
        }
        if let Some(rest) = s.strip_prefix("tcp:") {
            let (host, port) = rest
                .rsplit_once(':')
                .ok_or_else(|| format!("{s:?}: tcp: needs HOST:PORT"))?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let port: u16 = port
                .parse()
                .map_err(|_| format!("{s:?}: {port:?} is not a port number"))?;
            if host.is_empty() {
                return Err(format!("{s:?}: tcp: needs a host"));
            }
            return Ok(MigrationUri::Tcp(host.to_string(), port));
        }
        Err(format!(
            "{s:?}: a migration URI is file:PATH or tcp:HOST:PORT"
        ))
    }
}

impl std::fmt::Display for MigrationUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MigrationUri::File(p) => write!(f, "file:{}", p.display()),
            MigrationUri::Tcp(h, p) if h.contains(':') => write!(f, "tcp:[{h}]:{p}"),
            MigrationUri::Tcp(h, p) => write!(f, "tcp:{h}:{p}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_and_tcp_uris() {
        assert_eq!(
            MigrationUri::parse("file:/tmp/a.snap"),
            Ok(MigrationUri::File("/tmp/a.snap".into()))
        );
        assert_eq!(
            MigrationUri::parse("tcp:127.0.0.1:4444"),
            Ok(MigrationUri::Tcp("127.0.0.1".into(), 4444))
        );
        assert_eq!(
            MigrationUri::parse("tcp:[::1]:4444"),
            Ok(MigrationUri::Tcp("::1".into(), 4444))
        );
        for bad in [
            "file:",
            "tcp:host",
            "tcp::1",
            "tcp:h:99999",
            "exec:cat",
            "",
            "unix:/x",
        ] {
            assert!(MigrationUri::parse(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(
            MigrationUri::parse("tcp:[::1]:5").unwrap().to_string(),
            "tcp:[::1]:5"
        );
    }
}
