//! What the server listens on and how it lets clients in, and the parser for
//! QEMU's `-display vnc=` option syntax.
//!
//! Knows nothing of sockets or the protocol: only the settings.

use std::path::PathBuf;
use std::time::Duration;

/// The environment variable `password=on` reads the password from.
pub const PASSWORD_ENV: &str = "KITE_VNC_PASSWORD";

/// Where the RFB listener is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// A TCP host and port (`HOST:N` means port 5900+N; an empty host means
    /// every interface, as QEMU does).
    Tcp { host: String, port: u16 },
    /// A Unix socket path (`unix:PATH`).
    Unix(PathBuf),
}

/// What a client's ClientInit shared flag does (QEMU's `share=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Share {
    /// A client asking for exclusive access disconnects the others (the default).
    #[default]
    AllowExclusive,
    /// Every client shares the screen, whatever it asks.
    ForceShared,
}

#[derive(Clone, PartialEq, Eq)]
pub struct VncConfig {
    pub listen: Listen,
    /// A second listener speaking RFB inside WebSocket frames (noVNC):
    /// `(host, port)`.
    pub websocket: Option<(String, u16)>,
    /// VNC authentication with this password (only its first 8 bytes count,
    /// as in every VNC server); `None` means security type None.
    pub password: Option<String>,
    pub share: Share,
    /// The desktop name clients show.
    pub name: String,
    /// At most this many framebuffer updates per second per client.
    pub max_fps: u32,
    /// A client that does not take our bytes for this long is dropped.
    pub write_timeout: Duration,
}

impl std::fmt::Debug for VncConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VncConfig")
            .field("listen", &self.listen)
            .field("websocket", &self.websocket)
            .field("password", &self.password.as_ref().map(|_| "<set>"))
            .field("share", &self.share)
            .field("name", &self.name)
            .field("max_fps", &self.max_fps)
            .finish()
    }
}

impl VncConfig {
    /// A plain config: no password, no WebSocket, 30 updates/s.
    pub fn new(listen: Listen) -> Self {
        VncConfig {
            listen,
            websocket: None,
            password: None,
            share: Share::default(),
            name: "kite".to_string(),
            max_fps: 30,
            write_timeout: Duration::from_secs(30),
        }
    }

    /// Parses QEMU's VNC option syntax (with or without a leading `vnc=`):
    ///
    /// - `HOST:N` — TCP port 5900+N on HOST (`:N` for every interface,
    ///   `localhost:N`, `[::1]:N`); `unix:PATH` — a Unix socket.
    /// - `,websocket=PORT` (on the same host), `,websocket=HOST:PORT`, or
    ///   `,websocket=on` (port 5700+N, as QEMU).
    /// - `,password=on` — VNC authentication; the password comes from the
    ///   environment variable `KITE_VNC_PASSWORD`, or from the first line of
    ///   the file named by `,password-file=PATH` (which implies `password=on`).
    /// - `,share=allow-exclusive` (default) or `,share=force-shared`.
    /// - `,max-fps=N` (1..=240, default 30).
    pub fn parse(spec: &str) -> Result<VncConfig, String> {
        let spec = spec.strip_prefix("vnc=").unwrap_or(spec);
        let mut parts = spec.split(',');
        let addr = parts.next().unwrap_or("");
        let (listen, display_no) = parse_listen(addr)?;
        let mut cfg = VncConfig::new(listen);
        let mut password_on = false;
        let mut password_file = None;
        for opt in parts {
            let (key, value) = opt
                .split_once('=')
                .ok_or_else(|| format!("VNC option {opt:?} needs a value (key=value)"))?;
            match key {
                "websocket" => {
                    cfg.websocket = Some(parse_websocket(value, &cfg.listen, display_no)?)
                }
                "password" => password_on = parse_on_off(key, value)?,
                "password-file" => password_file = Some(PathBuf::from(value)),
                "share" => {
                    cfg.share = match value {
                        "allow-exclusive" => Share::AllowExclusive,
                        "force-shared" => Share::ForceShared,
                        _ => {
                            return Err(format!(
                                "share={value}: expected allow-exclusive or force-shared"
                            ))
                        }
                    }
                }
                "max-fps" => {
                    cfg.max_fps = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=240).contains(n))
                        .ok_or_else(|| format!("max-fps={value}: expected 1..240"))?
                }
                _ => return Err(format!("unknown VNC option {key:?}")),
            }
        }
        if let Some(path) = password_file {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("password-file {}: {e}", path.display()))?;
            let pw = text.lines().next().unwrap_or("").to_string();
            if pw.is_empty() {
                return Err(format!(
                    "password-file {}: the first line is empty",
                    path.display()
                ));
            }
            cfg.password = Some(pw);
        } else if password_on {
            match std::env::var(PASSWORD_ENV) {
                Ok(pw) if !pw.is_empty() => cfg.password = Some(pw),
                _ => {
                    return Err(format!(
                        "password=on needs the password in the environment variable {PASSWORD_ENV} (or use password-file=PATH)"
                    ))
                }
            }
        }
        Ok(cfg)
    }
}

fn parse_on_off(key: &str, value: &str) -> Result<bool, String> {
    match value {
        "on" | "yes" | "true" => Ok(true),
        "off" | "no" | "false" => Ok(false),
        _ => Err(format!("{key}={value}: expected on or off")),
    }
}

/// `HOST:N` or `unix:PATH`; returns the display number for TCP.
fn parse_listen(addr: &str) -> Result<(Listen, Option<u16>), String> {
    if let Some(path) = addr.strip_prefix("unix:") {
        if path.is_empty() {
            return Err("vnc=unix: needs a socket path".into());
        }
        return Ok((Listen::Unix(PathBuf::from(path)), None));
    }
    let (host, n) = addr.rsplit_once(':').ok_or_else(|| {
        format!("VNC address {addr:?}: expected HOST:N (display N is port 5900+N) or unix:PATH")
    })?;
    let n: u16 = n
        .parse()
        .ok()
        .filter(|n| *n <= 65535 - 5900)
        .ok_or_else(|| {
            format!(
                "VNC address {addr:?}: display number {n:?} must be 0..{}",
                65535 - 5900
            )
        })?;
    let host = unbracket(host);
    Ok((
        Listen::Tcp {
            host: host.to_string(),
            port: 5900 + n,
        },
        Some(n),
    ))
}

fn unbracket(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

fn parse_websocket(
    value: &str,
    listen: &Listen,
    display_no: Option<u16>,
) -> Result<(String, u16), String> {
    let default_host = match listen {
        Listen::Tcp { host, .. } => host.clone(),
        Listen::Unix(_) => "localhost".to_string(),
    };
    if value == "on" {
        let n = display_no.ok_or("websocket=on needs a TCP display number; give websocket=PORT")?;
        if n > 65535 - 5700 {
            return Err(format!("websocket=on: port 5700+{n} is out of range"));
        }
        return Ok((default_host, 5700 + n));
    }
    let (host, port) = match value.rsplit_once(':') {
        Some((h, p)) => (unbracket(h).to_string(), p),
        _ => (default_host, value),
    };
    let port = port
        .parse()
        .map_err(|_| format!("websocket={value}: expected PORT, HOST:PORT or on"))?;
    Ok((host, port))
}

/// The socket address string for a host and port (brackets for IPv6; an
/// empty host is every IPv4 interface).
pub fn host_port(host: &str, port: u16) -> String {
    if host.is_empty() {
        format!("0.0.0.0:{port}")
    } else if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_syntax_parses() {
        let c = VncConfig::parse("vnc=localhost:1,websocket=5701").unwrap();
        assert_eq!(
            c.listen,
            Listen::Tcp {
                host: "localhost".into(),
                port: 5901
            }
        );
        assert_eq!(c.websocket, Some(("localhost".into(), 5701)));
        assert_eq!(c.password, None);

        let c = VncConfig::parse(":0").unwrap();
        assert_eq!(
            c.listen,
            Listen::Tcp {
                host: String::new(),
                port: 5900
            }
        );
        let c = VncConfig::parse("[::1]:2,websocket=on,share=force-shared").unwrap();
        assert_eq!(
            c.listen,
            Listen::Tcp {
                host: "::1".into(),
                port: 5902
            }
        );
        assert_eq!(c.websocket, Some(("::1".into(), 5702)));
        assert_eq!(c.share, Share::ForceShared);

        let c = VncConfig::parse("unix:/tmp/k.sock,websocket=127.0.0.1:6080").unwrap();
        assert_eq!(c.listen, Listen::Unix("/tmp/k.sock".into()));
        assert_eq!(c.websocket, Some(("127.0.0.1".into(), 6080)));
    }

    #[test]
    fn bad_options_say_what_is_wrong() {
        for bad in [
            "localhost",
            "localhost:x",
            "localhost:70000",
            "unix:",
            ":1,websocket=x",
            ":1,bogus=1",
            ":1,password",
            ":1,share=maybe",
            ":1,max-fps=0",
            "unix:/x,websocket=on",
        ] {
            let e = VncConfig::parse(bad).unwrap_err();
            assert!(!e.is_empty(), "{bad}");
        }
    }

    #[test]
    fn password_comes_from_a_file() {
        let dir = std::env::temp_dir().join(format!("kite-vnc-pw-{}", std::process::id()));
        std::fs::write(&dir, "s3cret\nignored\n").unwrap();
        let c = VncConfig::parse(&format!(":3,password-file={}", dir.display())).unwrap();
        assert_eq!(c.password.as_deref(), Some("s3cret"));
        assert!(
            !format!("{c:?}").contains("s3cret"),
            "Debug hides the password"
        );
        std::fs::remove_file(&dir).unwrap();
        assert!(VncConfig::parse(":3,password-file=/nonexistent/pw").is_err());
    }

    #[test]
    fn password_on_reads_the_environment() {
        // The only test touching this variable.
        std::env::remove_var(PASSWORD_ENV);
        let e = VncConfig::parse(":1,password=on").unwrap_err();
        assert!(e.contains(PASSWORD_ENV), "{e}");
        std::env::set_var(PASSWORD_ENV, "from-env");
        let c = VncConfig::parse(":1,password=on").unwrap();
        std::env::remove_var(PASSWORD_ENV);
        assert_eq!(c.password.as_deref(), Some("from-env"));
        assert_eq!(VncConfig::parse(":1,password=off").unwrap().password, None);
    }

    #[test]
    fn host_port_brackets_ipv6() {
        assert_eq!(host_port("", 5900), "0.0.0.0:5900");
        assert_eq!(host_port("::1", 5900), "[::1]:5900");
        assert_eq!(host_port("localhost", 1), "localhost:1");
    }
}
