//! The byte pipes RFB runs over: a TCP or Unix socket, optionally inside
//! WebSocket framing. Each connection splits into a reading half (for the
//! client's messages) and a writing half (for our updates).
//!
//! Knows nothing of RFB.

pub mod websocket;

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// One accepted socket.
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    pub fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
        })
    }

    /// Ends both directions (wakes a thread blocked reading it).
    pub fn shutdown(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
        };
    }

    pub fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_write_timeout(t),
            Stream::Unix(s) => s.set_write_timeout(t),
        }
    }

    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(t),
            Stream::Unix(s) => s.set_read_timeout(t),
        }
    }

    pub fn set_nodelay(&self) {
        if let Stream::Tcp(s) = self {
            let _ = s.set_nodelay(true);
        }
    }

    /// Who is on the other end, for log lines.
    pub fn peer(&self) -> String {
        match self {
            Stream::Tcp(s) => s
                .peer_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| "tcp client".into()),
            Stream::Unix(_) => "unix client".into(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
        }
    }
}

/// The writing half: every call sends one whole message (one binary frame
/// over WebSocket).
pub struct Writer {
    out: io::BufWriter<Stream>,
    websocket: bool,
}

/// The writing half, shared by the session (updates) and the reader
/// (WebSocket pongs).
pub type SharedWriter = std::sync::Arc<std::sync::Mutex<Writer>>;

/// Locks the writer (a panic elsewhere leaves a usable socket behind).
pub fn lock_writer(w: &SharedWriter) -> std::sync::MutexGuard<'_, Writer> {
    w.lock().unwrap_or_else(|p| p.into_inner())
}

impl Writer {
    /// Sends one message and flushes it.
    pub fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        if self.websocket {
            websocket::write_frame(&mut self.out, websocket::OP_BINARY, msg)?;
        } else {
            self.out.write_all(msg)?;
        }
        self.out.flush()
    }

    fn control(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        websocket::write_frame(&mut self.out, opcode, payload)?;
        self.out.flush()
    }
}

/// The reading half: the client's bytes, unwrapped from WebSocket frames
/// when the connection is one.
pub struct Reader {
    inner: io::BufReader<Stream>,
    ws: Option<websocket::FrameReader>,
    writer: SharedWriter,
}

impl Read for Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(ws) = self.ws.as_mut() else {
            return self.inner.read(buf);
        };
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match ws.read(&mut self.inner, buf)? {
                Ok(n) => return Ok(n),
                Err(websocket::Control::Ping(p)) => {
                    lock_writer(&self.writer).control(websocket::OP_PONG, &p)?
                }
                Err(websocket::Control::Close) => {
                    let _ = lock_writer(&self.writer).control(websocket::OP_CLOSE, &[]);
                    return Ok(0);
                }
            }
        }
    }
}

/// Splits a connected socket (after any WebSocket handshake) into its halves;
/// the third value is a handle that can shut the socket down.
pub fn split(stream: Stream, websocket: bool) -> io::Result<(Reader, SharedWriter, Stream)> {
    let control = stream.try_clone()?;
    let write_half = stream.try_clone()?;
    let writer = std::sync::Arc::new(std::sync::Mutex::new(Writer {
        out: io::BufWriter::with_capacity(64 * 1024, write_half),
        websocket,
    }));
    let reader = Reader {
        inner: io::BufReader::with_capacity(16 * 1024, stream),
        ws: websocket.then(websocket::FrameReader::default),
        writer: writer.clone(),
    };
    Ok((reader, writer, control))
}
