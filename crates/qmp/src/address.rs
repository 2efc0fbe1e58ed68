//! Where a QMP server listens, as `--qmp` spells it (QEMU's chardev socket
//! syntax): `unix:PATH` or `tcp:HOST:PORT`, with optional `,server`,
//! `,server=on|off`, `,wait=on|off` and `,nowait`. Kite always listens (a
//! QMP client connects to Kite); `server=off` is refused. Unlike QEMU, Kite
//! starts the guest at once unless `wait=on` asks it to wait for the first
//! client.

use std::path::PathBuf;

/// What to listen on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Unix(PathBuf),
    /// Host (name or address) and port.
    Tcp(String, u16),
}

/// A listening socket's address and options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddress {
    pub endpoint: Endpoint,
    /// Wait for a client to connect before the guest starts.
    pub wait: bool,
}

fn on_off(opt: &str, v: &str) -> Result<bool, String> {
    match v {
        "on" | "yes" | "true" => Ok(true),
        "off" | "no" | "false" => Ok(false),
        _ => Err(format!("{opt}={v}: expected on or off")),
    }
}

impl std::str::FromStr for ListenAddress {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.split(',');
        let head = parts.next().unwrap_or_default();
        let endpoint = if let Some(path) = head.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix:PATH needs a path".into());
            }
            Endpoint::Unix(PathBuf::from(path))
        } else if let Some(hp) = head.strip_prefix("tcp:") {
            let (host, port) = hp
                .rsplit_once(':')
                .ok_or_else(|| format!("'{hp}' is not HOST:PORT"))?;
            let port: u16 = port
                .parse()
                .map_err(|_| format!("'{port}' is not a port number"))?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let host = if host.is_empty() { "127.0.0.1" } else { host };
            Endpoint::Tcp(host.to_string(), port)
        } else {
            return Err(format!(
                "'{s}' is not a QMP address (use unix:PATH or tcp:HOST:PORT, optionally ,server=on,wait=off)"
            ));
        };
        let mut wait = false;
        for opt in parts {
            let (k, v) = opt.split_once('=').unwrap_or((opt, "on"));
            match k {
                "server" => {
                    if !on_off(k, v)? {
                        return Err("server=off: Kite's QMP socket always listens".into());
                    }
                }
                "wait" => wait = on_off(k, v)?,
                "nowait" if v == "on" => wait = false,
                _ => {
                    return Err(format!(
                        "unknown QMP socket option '{opt}' (known: server, wait, nowait)"
                    ))
                }
            }
        }
        Ok(ListenAddress { endpoint, wait })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<ListenAddress, String> {
        s.parse()
    }

    #[test]
    fn qemu_spellings() {
        assert_eq!(
            p("unix:/tmp/q.sock"),
            Ok(ListenAddress {
                endpoint: Endpoint::Unix("/tmp/q.sock".into()),
                wait: false
            })
        );
        assert_eq!(
            p("unix:/tmp/q.sock,server,nowait").unwrap().endpoint,
            Endpoint::Unix("/tmp/q.sock".into())
        );
        assert!(!p("unix:/tmp/q,server=on,wait=off").unwrap().wait);
        assert!(p("unix:/tmp/q,server=on,wait=on").unwrap().wait);
        assert!(p("unix:/tmp/q,wait").unwrap().wait);
        assert_eq!(
            p("tcp:127.0.0.1:4444,server,wait=off").unwrap().endpoint,
            Endpoint::Tcp("127.0.0.1".into(), 4444)
        );
        assert_eq!(
            p("tcp::4444").unwrap().endpoint,
            Endpoint::Tcp("127.0.0.1".into(), 4444)
        );
        assert_eq!(
            p("tcp:[::1]:4444").unwrap().endpoint,
            Endpoint::Tcp("::1".into(), 4444)
        );
    }

    #[test]
    fn bad_addresses_say_why() {
        assert!(p("unix:").unwrap_err().contains("path"));
        assert!(p("tcp:localhost").unwrap_err().contains("HOST:PORT"));
        assert!(p("tcp:localhost:99999").unwrap_err().contains("port"));
        assert!(p("stdio").unwrap_err().contains("unix:PATH"));
        assert!(p("unix:/x,server=off").unwrap_err().contains("listens"));
        assert!(p("unix:/x,wait=maybe").unwrap_err().contains("on or off"));
        assert!(p("unix:/x,telnet").unwrap_err().contains("telnet"));
    }
}
