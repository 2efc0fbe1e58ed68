//! The binary encoding under every state struct: little-endian fixed-width
//! integers, strict booleans and option tags, counted lists with a hard cap.
//!
//! [`Reader`] never panics and never allocates more than the input could
//! hold: every read checks the bytes left, every count is checked against a
//! cap and against the bytes left before anything is allocated. This module
//! knows nothing about what the fields mean.

use thiserror::Error;

/// Why a state blob does not decode.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("state ends early: {what} needs {need} more bytes, {left} left")]
    Truncated {
        what: &'static str,
        need: usize,
        left: usize,
    },
    #[error("not a {what} state (bad magic)")]
    BadMagic { what: &'static str },
    #[error("{what} state version {found} is not supported (this build reads {supported})")]
    BadVersion {
        what: &'static str,
        found: u16,
        supported: u16,
    },
    #[error("{what}: {value} is out of range")]
    OutOfRange { what: &'static str, value: u64 },
    #[error("{0} bytes after the end of the state")]
    Trailing(usize),
}

impl From<DecodeError> for crate::Error {
    fn from(e: DecodeError) -> Self {
        crate::Error::Invalid(format!("state does not decode: {e}"))
    }
}

pub type DecodeResult<T> = Result<T, DecodeError>;

/// Appends fields to a byte vector.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// Start a blob with `magic` and `version`.
    pub fn new(magic: &[u8; 8], version: u16) -> Writer {
        let mut w = Writer {
            buf: Vec::with_capacity(1024),
        };
        w.bytes(magic);
        w.u16(version);
        w
    }

    pub fn finish(self) -> Vec<u8> {
        self.buf
    }

    pub fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn bool(&mut self, v: bool) {
        self.buf.push(u8::from(v));
    }
    pub fn u16(&mut self, v: u16) {
        self.bytes(&v.to_le_bytes());
    }
    pub fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
    /// A presence tag (0/1) then, if present, the value.
    pub fn option<T>(&mut self, v: &Option<T>, f: impl FnOnce(&mut Writer, &T)) {
        match v {
            None => self.u8(0),
            Some(x) => {
                self.u8(1);
                f(self, x);
            }
        }
    }
    /// A u32 count then the items. The caller keeps `items.len()` under the
    /// cap the reader applies.
    pub fn list<T>(&mut self, items: &[T], mut f: impl FnMut(&mut Writer, &T)) {
        self.u32(u32::try_from(items.len()).unwrap_or(u32::MAX));
        for x in items {
            f(self, x);
        }
    }
}

/// Reads fields from a byte slice; see the module doc.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Check `magic` and `version` at the start of `buf`.
    pub fn new(
        buf: &'a [u8],
        magic: &[u8; 8],
        version: u16,
        what: &'static str,
    ) -> DecodeResult<Reader<'a>> {
        let mut r = Reader { buf };
        if r.take(8, what)? != magic {
            return Err(DecodeError::BadMagic { what });
        }
        let found = r.u16("version")?;
        if found != version {
            return Err(DecodeError::BadVersion {
                what,
                found,
                supported: version,
            });
        }
        Ok(r)
    }

    /// Every byte must have been read.
    pub fn finish(self) -> DecodeResult<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Trailing(self.buf.len()))
        }
    }

    pub fn left(&self) -> usize {
        self.buf.len()
    }

    pub fn take(&mut self, n: usize, what: &'static str) -> DecodeResult<&'a [u8]> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated {
                what,
                need: n,
                left: self.buf.len(),
            });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub fn array<const N: usize>(&mut self, what: &'static str) -> DecodeResult<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }
    pub fn u8(&mut self, what: &'static str) -> DecodeResult<u8> {
        Ok(self.array::<1>(what)?[0])
    }
    pub fn bool(&mut self, what: &'static str) -> DecodeResult<bool> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(DecodeError::OutOfRange {
                what,
                value: u64::from(v),
            }),
        }
    }
    pub fn u16(&mut self, what: &'static str) -> DecodeResult<u16> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    pub fn u32(&mut self, what: &'static str) -> DecodeResult<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    pub fn u64(&mut self, what: &'static str) -> DecodeResult<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    /// A u8 that must be at most `max`.
    pub fn u8_max(&mut self, max: u8, what: &'static str) -> DecodeResult<u8> {
        let v = self.u8(what)?;
        if v > max {
            return Err(DecodeError::OutOfRange {
                what,
                value: u64::from(v),
            });
        }
        Ok(v)
    }
    pub fn option<T>(
        &mut self,
        what: &'static str,
        f: impl FnOnce(&mut Reader<'a>) -> DecodeResult<T>,
    ) -> DecodeResult<Option<T>> {
        if self.bool(what)? {
            Ok(Some(f(self)?))
        } else {
            Ok(None)
        }
    }
    /// A counted list of at most `cap` items of at least `min_item` bytes each.
    pub fn list<T>(
        &mut self,
        cap: usize,
        min_item: usize,
        what: &'static str,
        mut f: impl FnMut(&mut Reader<'a>) -> DecodeResult<T>,
    ) -> DecodeResult<Vec<T>> {
        let n = self.u32(what)? as usize;
        if n > cap {
            return Err(DecodeError::OutOfRange {
                what,
                value: n as u64,
            });
        }
        let need = n.saturating_mul(min_item.max(1));
        if need > self.buf.len() {
            return Err(DecodeError::Truncated {
                what,
                need,
                left: self.buf.len(),
            });
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(f(self)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAGIC: &[u8; 8] = b"KITETEST";

    #[test]
    fn fields_round_trip_and_nothing_is_left() {
        let mut w = Writer::new(MAGIC, 3);
        w.u8(7);
        w.bool(true);
        w.u16(0xbeef);
        w.u32(0xdead_beef);
        w.u64(u64::MAX - 1);
        w.option(&Some(5u32), |w, v| w.u32(*v));
        w.option(&None::<u32>, |w, v| w.u32(*v));
        w.list(&[1u16, 2, 3], |w, v| w.u16(*v));
        let b = w.finish();
        let mut r = Reader::new(&b, MAGIC, 3, "test").unwrap();
        assert_eq!(r.u8("a").unwrap(), 7);
        assert!(r.bool("b").unwrap());
        assert_eq!(r.u16("c").unwrap(), 0xbeef);
        assert_eq!(r.u32("d").unwrap(), 0xdead_beef);
        assert_eq!(r.u64("e").unwrap(), u64::MAX - 1);
        assert_eq!(r.option("f", |r| r.u32("f")).unwrap(), Some(5));
        assert_eq!(r.option("g", |r| r.u32("g")).unwrap(), None);
        assert_eq!(r.list(8, 2, "h", |r| r.u16("h")).unwrap(), vec![1, 2, 3]);
        r.finish().unwrap();
    }

    #[test]
    fn hostile_input_is_refused() {
        let w = Writer::new(MAGIC, 1);
        let b = w.finish();
        assert!(matches!(
            Reader::new(&b[..5], MAGIC, 1, "test"),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(
            Reader::new(&b, b"OTHERMAG", 1, "test"),
            Err(DecodeError::BadMagic { .. })
        ));
        assert!(matches!(
            Reader::new(&b, MAGIC, 2, "test"),
            Err(DecodeError::BadVersion { found: 1, .. })
        ));
        // A bool that is neither 0 nor 1, a list longer than its cap, a list
        // whose count claims more bytes than there are (no allocation).
        let mut w = Writer::new(MAGIC, 1);
        w.u8(2);
        w.u32(u32::MAX);
        let b = w.finish();
        let mut r = Reader::new(&b, MAGIC, 1, "test").unwrap();
        assert!(matches!(r.bool("x"), Err(DecodeError::OutOfRange { .. })));
        let mut r2 = Reader::new(&b[..], MAGIC, 1, "test").unwrap();
        r2.u8("skip").unwrap();
        assert!(matches!(
            r2.list(usize::MAX, 8, "l", |r| r.u64("l")),
            Err(DecodeError::Truncated { .. })
        ));
        let mut r3 = Reader::new(&b[..], MAGIC, 1, "test").unwrap();
        r3.u8("skip").unwrap();
        assert!(matches!(
            r3.list(16, 8, "l", |r| r.u64("l")),
            Err(DecodeError::OutOfRange { .. })
        ));
        let r4 = Reader::new(&b[..], MAGIC, 1, "test").unwrap();
        assert_eq!(r4.finish(), Err(DecodeError::Trailing(5)));
    }
}
