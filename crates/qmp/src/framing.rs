//! Splitting a client's byte stream into JSON texts, as QMP sends them: one
//! value after another with optional whitespace between, no length prefix.
//! The splitter tracks nesting and strings only; it does not parse, so a
//! malformed text still ends where its brackets close (or at a newline
//! outside any bracket) and the next one can be read. Each text is capped at
//! `max_len` bytes; the caller drops a client that exceeds it.

/// One piece of input.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A complete JSON text (maybe malformed), to parse.
    Text(Vec<u8>),
    /// A text grew beyond the limit.
    TooLong,
}

/// The splitter's state between reads.
#[derive(Debug)]
pub struct Framer {
    max_len: usize,
    buf: Vec<u8>,
    depth: u32,
    in_string: bool,
    escape: bool,
    /// A bare scalar (or junk) outside any bracket is being read.
    bare: bool,
}

impl Framer {
    pub fn new(max_len: usize) -> Framer {
        Framer {
            max_len,
            buf: Vec::new(),
            depth: 0,
            in_string: false,
            escape: false,
            bare: false,
        }
    }

    /// Feed `input`; returns the frames it completes, in order. After
    /// `TooLong` the framer is in no defined state: drop the client.
    pub fn feed(&mut self, input: &[u8]) -> Vec<Frame> {
        let mut out = Vec::new();
        for &b in input {
            if self.buf.is_empty() && self.depth == 0 && !self.bare && !self.in_string {
                // Between texts: skip whitespace; anything else starts one.
                if b.is_ascii_whitespace() {
                    continue;
                }
            }
            if self.bare && self.depth == 0 && !self.in_string && b.is_ascii_whitespace() {
                out.push(Frame::Text(std::mem::take(&mut self.buf)));
                self.bare = false;
                continue;
            }
            self.buf.push(b);
            if self.buf.len() > self.max_len {
                out.push(Frame::TooLong);
                self.buf.clear();
                return out;
            }
            if self.in_string {
                if self.escape {
                    self.escape = false;
                } else if b == b'\\' {
                    self.escape = true;
                } else if b == b'"' {
                    self.in_string = false;
                    self.end_if_closed(&mut out);
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    if self.depth == 0 {
                        // A stray closer: a malformed text of its own.
                        if !self.bare {
                            out.push(Frame::Text(std::mem::take(&mut self.buf)));
                        }
                        continue;
                    }
                    self.depth -= 1;
                    self.end_if_closed(&mut out);
                }
                _ => {
                    if self.depth == 0 {
                        self.bare = true;
                    }
                }
            }
        }
        out
    }

    /// After a closing bracket or quote: a text that is not a bare scalar
    /// and has closed every bracket is complete.
    fn end_if_closed(&mut self, out: &mut Vec<Frame>) {
        if self.depth == 0 && !self.bare {
            out.push(Frame::Text(std::mem::take(&mut self.buf)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(frames: Vec<Frame>) -> Vec<String> {
        frames
            .into_iter()
            .map(|f| match f {
                Frame::Text(t) => String::from_utf8(t).unwrap(),
                Frame::TooLong => "<too long>".into(),
            })
            .collect()
    }

    #[test]
    fn objects_back_to_back_and_across_reads() {
        let mut f = Framer::new(1 << 20);
        assert_eq!(
            texts(f.feed(b"{\"execute\":\"a\"}{\"execute\": \"b\"}\r\n  {\"exe")),
            vec!["{\"execute\":\"a\"}", "{\"execute\": \"b\"}"]
        );
        assert_eq!(
            texts(f.feed(b"cute\":\"}{\\\"\"}")),
            vec!["{\"execute\":\"}{\\\"\"}"]
        );
    }

    #[test]
    fn junk_ends_at_whitespace_and_brackets_still_nest() {
        let mut f = Framer::new(1 << 20);
        assert_eq!(
            texts(f.feed(b"garbage\n42 [1,{\"a\":[2]}] \"str\" } {}")),
            vec!["garbage", "42", "[1,{\"a\":[2]}]", "\"str\"", "}", "{}"]
        );
        // Malformed inside brackets: still one text, closed by its brackets.
        assert_eq!(texts(f.feed(b"{\"a\" 1 2}")), vec!["{\"a\" 1 2}"]);
    }

    #[test]
    fn a_text_over_the_limit_is_reported() {
        let mut f = Framer::new(16);
        assert_eq!(texts(f.feed(b"{\"a\":1}")), vec!["{\"a\":1}"]);
        let mut long = b"{\"a\":\"".to_vec();
        long.extend(std::iter::repeat_n(b'x', 100));
        assert_eq!(texts(f.feed(&long)), vec!["<too long>"]);
        // A never-closed string is capped too.
        let mut f = Framer::new(1000);
        let frames = f.feed(&vec![b'['; 5000]);
        assert_eq!(frames, vec![Frame::TooLong]);
    }
}
