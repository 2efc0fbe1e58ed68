//! The snapshot stream: a header (magic, format version, the Kite version
//! that wrote it, the machine's configuration fingerprint), then sections
//! (name, version, payload, CRC32 each), then an end marker.
//!
//! ```text
//! header:  "KITESNAP" | format u32 | kite version (u16 len, utf-8)
//!          | fingerprint (u32 len, "key=value" lines) | CRC32 of the above
//! section: 'S' | name (u8 len, ascii) | version u16 | payload (u64 len) | CRC32
//! end:     'E' | section count u64 | CRC32 of the end marker
//! ```
//!
//! All integers are little endian. `decode` is a pure function over bytes
//! that checks everything (magic, version, every CRC, lengths, the end
//! marker, nothing after it) before anyone applies a byte of it; a fuzz
//! target can call it as it is. It must not know what a section means.

use std::io::Write;

use thiserror::Error;

pub const MAGIC: &[u8; 8] = b"KITESNAP";
/// The stream format this Kite writes and reads.
pub const FORMAT_VERSION: u32 = 1;
const TAG_SECTION: u8 = b'S';
const TAG_END: u8 = b'E';
/// Header strings are short; refuse anything larger without allocating.
const MAX_HEADER_STRING: usize = 1 << 16;
/// No machine has more sections than this.
const MAX_SECTIONS: usize = 1 << 20;

/// Why a stream was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("not a Kite snapshot (bad magic)")]
    BadMagic,
    #[error("snapshot format version {0}; this Kite reads version {FORMAT_VERSION}")]
    Version(u32),
    #[error("the snapshot is truncated (it ends inside {0})")]
    Truncated(&'static str),
    #[error("the snapshot is corrupt: {0} fails its checksum")]
    Checksum(String),
    #[error("the snapshot is corrupt: {0}")]
    Malformed(String),
}

/// What the header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub format: u32,
    pub kite_version: String,
    /// The configuration fingerprint, as `key=value` pairs in order.
    pub fingerprint: Vec<(String, String)>,
}

/// One section, borrowed from the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section<'a> {
    pub name: &'a str,
    pub version: u16,
    pub data: &'a [u8],
}

/// A whole stream, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded<'a> {
    pub header: Header,
    pub sections: Vec<Section<'a>>,
}

impl<'a> Decoded<'a> {
    /// The one section called `name`.
    pub fn section(&self, name: &str) -> Option<&Section<'a>> {
        self.sections.iter().find(|s| s.name == name)
    }
}

fn encode_fingerprint(fp: &[(String, String)]) -> String {
    fp.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
}

/// The header's bytes (with its CRC).
pub fn encode_header(h: &Header) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&h.format.to_le_bytes());
    let v = h.kite_version.as_bytes();
    let v = &v[..v.len().min(MAX_HEADER_STRING - 1)];
    b.extend_from_slice(&(v.len() as u16).to_le_bytes());
    b.extend_from_slice(v);
    let fp = encode_fingerprint(&h.fingerprint);
    b.extend_from_slice(&(fp.len() as u32).to_le_bytes());
    b.extend_from_slice(fp.as_bytes());
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

/// Writes a stream section by section; counts what it wrote.
pub struct StreamWriter<W: Write> {
    out: W,
    sections: u64,
    written: u64,
}

impl<W: Write> StreamWriter<W> {
    /// Start a stream with `header`.
    pub fn new(mut out: W, header: &Header) -> std::io::Result<StreamWriter<W>> {
        let h = encode_header(header);
        out.write_all(&h)?;
        Ok(StreamWriter {
            out,
            sections: 0,
            written: h.len() as u64,
        })
    }

    /// A section whose payload is `data`.
    pub fn section(&mut self, name: &str, version: u16, data: &[u8]) -> std::io::Result<()> {
        self.section_parts(name, version, data.len() as u64, |sink| sink(data))
    }

    /// A section of `len` bytes that `fill` produces in pieces (it calls
    /// its argument with each piece; the pieces must add up to `len`).
    pub fn section_parts(
        &mut self,
        name: &str,
        version: u16,
        len: u64,
        fill: impl FnOnce(&mut dyn FnMut(&[u8]) -> std::io::Result<()>) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        if name.is_empty() || name.len() > 255 || !name.is_ascii() {
            return Err(std::io::Error::other(format!("bad section name {name:?}")));
        }
        let mut head = vec![TAG_SECTION, name.len() as u8];
        head.extend_from_slice(name.as_bytes());
        head.extend_from_slice(&version.to_le_bytes());
        head.extend_from_slice(&len.to_le_bytes());
        let mut crc = crc32fast::Hasher::new();
        crc.update(&head);
        self.out.write_all(&head)?;
        let mut n = 0u64;
        {
            let out = &mut self.out;
            let mut sink = |piece: &[u8]| -> std::io::Result<()> {
                crc.update(piece);
                n += piece.len() as u64;
                out.write_all(piece)
            };
            fill(&mut sink)?;
        }
        if n != len {
            return Err(std::io::Error::other(format!(
                "section {name}: {n} bytes written, {len} announced"
            )));
        }
        self.out.write_all(&crc.finalize().to_le_bytes())?;
        self.sections += 1;
        self.written += head.len() as u64 + len + 4;
        Ok(())
    }

    /// End the stream and hand back the writer.
    pub fn finish(mut self) -> std::io::Result<W> {
        let mut end = vec![TAG_END];
        end.extend_from_slice(&self.sections.to_le_bytes());
        let crc = crc32fast::hash(&end);
        end.extend_from_slice(&crc.to_le_bytes());
        self.out.write_all(&end)?;
        self.out.flush()?;
        Ok(self.out)
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }
}

/// A cursor over the stream's bytes.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], FormatError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or(FormatError::Truncated(what))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, FormatError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, FormatError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, FormatError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, FormatError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_le_bytes(a))
    }
}

/// Parse just the header (to say early what a file is).
pub fn decode_header(bytes: &[u8]) -> Result<(Header, usize), FormatError> {
    let mut c = Cursor {
        data: bytes,
        pos: 0,
    };
    // A short file is truncated only if what it has is the magic's start.
    let n = bytes.len().min(MAGIC.len());
    if bytes[..n] != MAGIC[..n] {
        return Err(FormatError::BadMagic);
    }
    c.take(MAGIC.len(), "the header")?;
    let format = c.u32("the header")?;
    if format != FORMAT_VERSION {
        return Err(FormatError::Version(format));
    }
    let vlen = usize::from(c.u16("the header")?);
    let version = c.take(vlen, "the header")?;
    let flen = c.u32("the header")? as usize;
    if flen > MAX_HEADER_STRING {
        return Err(FormatError::Malformed(format!(
            "a {flen}-byte configuration fingerprint"
        )));
    }
    let fp = c.take(flen, "the header")?;
    let body_end = c.pos;
    let crc = c.u32("the header")?;
    if crc32fast::hash(&bytes[..body_end]) != crc {
        return Err(FormatError::Checksum("the header".into()));
    }
    let kite_version = std::str::from_utf8(version)
        .map_err(|_| FormatError::Malformed("the Kite version is not text".into()))?
        .to_string();
    let fp = std::str::from_utf8(fp)
        .map_err(|_| FormatError::Malformed("the fingerprint is not text".into()))?;
    let mut fingerprint = Vec::new();
    for line in fp.lines() {
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| FormatError::Malformed(format!("fingerprint line {line:?}")))?;
        fingerprint.push((k.to_string(), v.to_string()));
    }
    Ok((
        Header {
            format,
            kite_version,
            fingerprint,
        },
        c.pos,
    ))
}

/// Check a whole stream and return its parts (borrowed from `bytes`).
pub fn decode(bytes: &[u8]) -> Result<Decoded<'_>, FormatError> {
    let (header, start) = decode_header(bytes)?;
    let mut c = Cursor {
        data: bytes,
        pos: start,
    };
    let mut sections = Vec::new();
    loop {
        let at = c.pos;
        match c.u8("a section")? {
            TAG_SECTION => {
                let nlen = usize::from(c.u8("a section")?);
                let name = c.take(nlen, "a section")?;
                let name = std::str::from_utf8(name)
                    .ok()
                    .filter(|n| !n.is_empty() && n.is_ascii())
                    .ok_or_else(|| FormatError::Malformed("a section name".into()))?;
                let version = c.u16("a section")?;
                let len = c.u64("a section")?;
                let len = usize::try_from(len).map_err(|_| FormatError::Truncated("a section"))?;
                let data = c.take(len, "a section")?;
                let body_end = c.pos;
                let crc = c.u32("a section")?;
                if crc32fast::hash(&bytes[at..body_end]) != crc {
                    return Err(FormatError::Checksum(format!("section {name}")));
                }
                if sections.len() >= MAX_SECTIONS {
                    return Err(FormatError::Malformed("too many sections".into()));
                }
                sections.push(Section {
                    name,
                    version,
                    data,
                });
            }
            TAG_END => {
                let count = c.u64("the end marker")?;
                let body_end = c.pos;
                let crc = c.u32("the end marker")?;
                if crc32fast::hash(&bytes[at..body_end]) != crc {
                    return Err(FormatError::Checksum("the end marker".into()));
                }
                if count != sections.len() as u64 {
                    return Err(FormatError::Malformed(format!(
                        "the end marker counts {count} sections, the stream has {}",
                        sections.len()
                    )));
                }
                if c.pos != bytes.len() {
                    return Err(FormatError::Malformed(format!(
                        "{} bytes after the end marker",
                        bytes.len() - c.pos
                    )));
                }
                return Ok(Decoded { header, sections });
            }
            t => {
                return Err(FormatError::Malformed(format!(
                    "unknown record {t:#04x} at byte {at}"
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            format: FORMAT_VERSION,
            kite_version: "0.1.0".into(),
            fingerprint: vec![
                ("memory".into(), "134217728".into()),
                ("cpus".into(), "2".into()),
            ],
        }
    }

    fn stream() -> Vec<u8> {
        let mut w = StreamWriter::new(Vec::new(), &header()).unwrap();
        w.section("dev.serial", 1, b"hello").unwrap();
        w.section_parts("ram.0", 1, 6, |sink| {
            sink(b"abc")?;
            sink(b"def")
        })
        .unwrap();
        w.section("empty", 3, b"").unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn round_trip() {
        let bytes = stream();
        let d = decode(&bytes).unwrap();
        assert_eq!(d.header, header());
        assert_eq!(d.sections.len(), 3);
        assert_eq!(d.section("dev.serial").unwrap().data, b"hello");
        assert_eq!(d.section("ram.0").unwrap().data, b"abcdef");
        assert_eq!(d.section("empty").unwrap().version, 3);
        assert!(d.section("nothing").is_none());
    }

    #[test]
    fn every_truncation_is_refused() {
        let bytes = stream();
        for n in 0..bytes.len() {
            let e = decode(&bytes[..n]).unwrap_err();
            assert!(matches!(e, FormatError::Truncated(_)), "{n} bytes: {e}");
        }
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let bytes = stream();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            assert!(decode(&b).is_err(), "flipping byte {i} went unnoticed");
        }
    }

    #[test]
    fn trailing_bytes_other_versions_and_other_files_are_refused() {
        let mut bytes = stream();
        bytes.push(0);
        assert!(matches!(decode(&bytes), Err(FormatError::Malformed(_))));
        let mut h = header();
        h.format = 2;
        let w = StreamWriter::new(Vec::new(), &h).unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(decode(&bytes), Err(FormatError::Version(2)));
        assert_eq!(decode(b"\x7fELF........"), Err(FormatError::BadMagic));
        assert_eq!(decode(b"hello"), Err(FormatError::BadMagic));
    }

    #[test]
    fn a_section_shorter_than_announced_is_refused_by_the_writer() {
        let mut w = StreamWriter::new(Vec::new(), &header()).unwrap();
        assert!(w.section_parts("x", 1, 4, |sink| sink(b"ab")).is_err());
    }
}
