//! The fuzzer's bytes read as a stream of small values: each harness pulls
//! an operation kind, an offset, a width and a value from it. A drained
//! stream yields zeros, so every input, however short, is a valid program.
//!
//! It must not know about devices.

/// A cursor over the fuzzer's input.
pub struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Input<'a> {
        Input { data, pos: 0 }
    }

    /// Whether every byte was consumed.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// The bytes not yet consumed.
    pub fn rest(&self) -> &'a [u8] {
        &self.data[self.pos.min(self.data.len())..]
    }

    pub fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    pub fn bool(&mut self) -> bool {
        self.u8() & 1 != 0
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    pub fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }

    /// Up to `n` bytes (fewer at the end of the input).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        let end = start.saturating_add(n).min(self.data.len());
        self.pos = start.saturating_add(n);
        &self.data[start..end]
    }

    /// An access width: 1, 2, 4 or 8 bytes.
    pub fn width(&mut self) -> usize {
        1 << (self.u8() & 3)
    }

    /// A value of `len` bytes, little endian.
    pub fn value(&mut self, len: usize) -> Vec<u8> {
        let v = self.u64().to_le_bytes();
        v[..len.min(8)].to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_little_endian_then_zeros_past_the_end() {
        let mut i = Input::new(&[0x34, 0x12, 0xff]);
        assert_eq!(i.u16(), 0x1234);
        assert!(!i.is_empty());
        assert_eq!(i.u16(), 0x00ff);
        assert!(i.is_empty());
        assert_eq!(i.u64(), 0);
        assert_eq!(i.bytes(4), &[] as &[u8]);
    }

    #[test]
    fn widths_are_powers_of_two_up_to_eight() {
        let mut i = Input::new(&[0, 1, 2, 3, 7]);
        let w: Vec<usize> = (0..5).map(|_| i.width()).collect();
        assert_eq!(w, vec![1, 2, 4, 8, 8]);
    }
}
