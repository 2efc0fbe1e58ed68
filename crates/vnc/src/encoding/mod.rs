//! Rectangle encodings: turn part of a surface into the bytes of one
//! FramebufferUpdate rectangle in the client's pixel format.
//!
//! Knows nothing of sockets or of the rest of the protocol.

pub mod raw;
pub mod zrle;

/// RFB encoding numbers.
pub const RAW: i32 = 0;
pub const ZRLE: i32 = 16;
/// Pseudo-encoding: the client understands a change of framebuffer size.
pub const DESKTOP_SIZE: i32 = -223;

/// The encodings this server can send, from a client's SetEncodings list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientEncodings {
    /// The first listed encoding we can produce (Raw when none is listed).
    pub preferred: Preferred,
    pub desktop_size: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Preferred {
    #[default]
    Raw,
    Zrle,
}

impl ClientEncodings {
    /// Builds the choice from the client's list, in its order of preference.
    pub fn from_list(list: impl IntoIterator<Item = i32>) -> Self {
        let mut enc = ClientEncodings::default();
        let mut chosen = false;
        for e in list {
            match e {
                RAW if !chosen => chosen = true,
                ZRLE if !chosen => {
                    enc.preferred = Preferred::Zrle;
                    chosen = true;
                }
                DESKTOP_SIZE => enc.desktop_size = true,
                _ => {}
            }
        }
        enc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_known_encoding_wins() {
        let e = ClientEncodings::from_list([7, 16, 0, -223]);
        assert_eq!(e.preferred, Preferred::Zrle);
        assert!(e.desktop_size);
        let e = ClientEncodings::from_list([5, 0, 16]);
        assert_eq!(e.preferred, Preferred::Raw);
        assert!(!e.desktop_size);
        assert_eq!(ClientEncodings::from_list([]).preferred, Preferred::Raw);
    }
}
