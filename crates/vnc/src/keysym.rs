//! X keysyms (what RFB KeyEvents carry) to Linux evdev key codes for a US
//! keyboard, and whether the keysym is the shifted symbol of its key.
//!
//! Knows nothing of the protocol or the display: a table and a lookup.

/// Linux evdev key codes (linux/input-event-codes.h) used here.
pub mod code {
    pub const ESC: u16 = 1;
    pub const MINUS: u16 = 12;
    pub const EQUAL: u16 = 13;
    pub const BACKSPACE: u16 = 14;
    pub const TAB: u16 = 15;
    pub const LEFTBRACE: u16 = 26;
    pub const RIGHTBRACE: u16 = 27;
    pub const ENTER: u16 = 28;
    pub const LEFTCTRL: u16 = 29;
    pub const SEMICOLON: u16 = 39;
    pub const APOSTROPHE: u16 = 40;
    pub const GRAVE: u16 = 41;
    pub const LEFTSHIFT: u16 = 42;
    pub const BACKSLASH: u16 = 43;
    pub const COMMA: u16 = 51;
    pub const DOT: u16 = 52;
    pub const SLASH: u16 = 53;
    pub const RIGHTSHIFT: u16 = 54;
    pub const KPASTERISK: u16 = 55;
    pub const LEFTALT: u16 = 56;
    pub const SPACE: u16 = 57;
    pub const CAPSLOCK: u16 = 58;
    pub const F1: u16 = 59;
    pub const NUMLOCK: u16 = 69;
    pub const SCROLLLOCK: u16 = 70;
    pub const KP7: u16 = 71;
    pub const KP8: u16 = 72;
    pub const KP9: u16 = 73;
    pub const KPMINUS: u16 = 74;
    pub const KP4: u16 = 75;
    pub const KP5: u16 = 76;
    pub const KP6: u16 = 77;
    pub const KPPLUS: u16 = 78;
    pub const KP1: u16 = 79;
    pub const KP2: u16 = 80;
    pub const KP3: u16 = 81;
    pub const KP0: u16 = 82;
    pub const KPDOT: u16 = 83;
    pub const F11: u16 = 87;
    pub const F12: u16 = 88;
    pub const KPENTER: u16 = 96;
    pub const RIGHTCTRL: u16 = 97;
    pub const KPSLASH: u16 = 98;
    pub const SYSRQ: u16 = 99;
    pub const RIGHTALT: u16 = 100;
    pub const HOME: u16 = 102;
    pub const UP: u16 = 103;
    pub const PAGEUP: u16 = 104;
    pub const LEFT: u16 = 105;
    pub const RIGHT: u16 = 106;
    pub const END: u16 = 107;
    pub const DOWN: u16 = 108;
    pub const PAGEDOWN: u16 = 109;
    pub const INSERT: u16 = 110;
    pub const DELETE: u16 = 111;
    pub const KPEQUAL: u16 = 117;
    pub const PAUSE: u16 = 119;
    pub const KPCOMMA: u16 = 121;
    pub const LEFTMETA: u16 = 125;
    pub const RIGHTMETA: u16 = 126;
    pub const COMPOSE: u16 = 127;
}

/// The keys of the letter rows, in evdev order: Q.. P are 16..25, A..L are
/// 30..38, Z..M are 44..50.
const LETTERS: [(u8, u16); 26] = [
    (b'a', 30),
    (b'b', 48),
    (b'c', 46),
    (b'd', 32),
    (b'e', 18),
    (b'f', 33),
    (b'g', 34),
    (b'h', 35),
    (b'i', 23),
    (b'j', 36),
    (b'k', 37),
    (b'l', 38),
    (b'm', 50),
    (b'n', 49),
    (b'o', 24),
    (b'p', 25),
    (b'q', 16),
    (b'r', 19),
    (b's', 31),
    (b't', 20),
    (b'u', 22),
    (b'v', 47),
    (b'w', 17),
    (b'x', 45),
    (b'y', 21),
    (b'z', 44),
];

/// Printable ASCII that is not a letter: (unshifted char, shifted char, key).
const SYMBOLS: [(u8, u8, u16); 22] = [
    (b'1', b'!', 2),
    (b'2', b'@', 3),
    (b'3', b'#', 4),
    (b'4', b'$', 5),
    (b'5', b'%', 6),
    (b'6', b'^', 7),
    (b'7', b'&', 8),
    (b'8', b'*', 9),
    (b'9', b'(', 10),
    (b'0', b')', 11),
    (b'-', b'_', code::MINUS),
    (b'=', b'+', code::EQUAL),
    (b'[', b'{', code::LEFTBRACE),
    (b']', b'}', code::RIGHTBRACE),
    (b'\\', b'|', code::BACKSLASH),
    (b';', b':', code::SEMICOLON),
    (b'\'', b'"', code::APOSTROPHE),
    (b'`', b'~', code::GRAVE),
    (b',', b'<', code::COMMA),
    (b'.', b'>', code::DOT),
    (b'/', b'?', code::SLASH),
    (b' ', b' ', code::SPACE),
];

/// Function, editing, modifier and keypad keysyms (0xffxx and 0xfe03).
const SPECIAL: &[(u32, u16)] = &[
    (0xff08, code::BACKSPACE),
    (0xff09, code::TAB),
    (0xfe20, code::TAB), // ISO_Left_Tab (Shift+Tab)
    (0xff0d, code::ENTER),
    (0xff13, code::PAUSE),
    (0xff14, code::SCROLLLOCK),
    (0xff15, code::SYSRQ),
    (0xff1b, code::ESC),
    (0xff50, code::HOME),
    (0xff51, code::LEFT),
    (0xff52, code::UP),
    (0xff53, code::RIGHT),
    (0xff54, code::DOWN),
    (0xff55, code::PAGEUP),
    (0xff56, code::PAGEDOWN),
    (0xff57, code::END),
    (0xff61, code::SYSRQ), // Print
    (0xff63, code::INSERT),
    (0xff67, code::COMPOSE), // Menu
    (0xff7f, code::NUMLOCK),
    (0xff80, code::SPACE), // KP_Space
    (0xff89, code::TAB),   // KP_Tab
    (0xff8d, code::KPENTER),
    (0xff95, code::KP7),   // KP_Home
    (0xff96, code::KP4),   // KP_Left
    (0xff97, code::KP8),   // KP_Up
    (0xff98, code::KP6),   // KP_Right
    (0xff99, code::KP2),   // KP_Down
    (0xff9a, code::KP9),   // KP_Prior
    (0xff9b, code::KP3),   // KP_Next
    (0xff9c, code::KP1),   // KP_End
    (0xff9d, code::KP5),   // KP_Begin
    (0xff9e, code::KP0),   // KP_Insert
    (0xff9f, code::KPDOT), // KP_Delete
    (0xffaa, code::KPASTERISK),
    (0xffab, code::KPPLUS),
    (0xffac, code::KPCOMMA), // KP_Separator
    (0xffad, code::KPMINUS),
    (0xffae, code::KPDOT),
    (0xffaf, code::KPSLASH),
    (0xffb0, code::KP0),
    (0xffb1, code::KP1),
    (0xffb2, code::KP2),
    (0xffb3, code::KP3),
    (0xffb4, code::KP4),
    (0xffb5, code::KP5),
    (0xffb6, code::KP6),
    (0xffb7, code::KP7),
    (0xffb8, code::KP8),
    (0xffb9, code::KP9),
    (0xffbd, code::KPEQUAL),
    (0xffe1, code::LEFTSHIFT),
    (0xffe2, code::RIGHTSHIFT),
    (0xffe3, code::LEFTCTRL),
    (0xffe4, code::RIGHTCTRL),
    (0xffe5, code::CAPSLOCK),
    (0xffe7, code::LEFTMETA), // Meta_L
    (0xffe8, code::RIGHTMETA),
    (0xffe9, code::LEFTALT),
    (0xffea, code::RIGHTALT),
    (0xffeb, code::LEFTMETA), // Super_L
    (0xffec, code::RIGHTMETA),
    (0xfe03, code::RIGHTALT), // ISO_Level3_Shift (AltGr)
    (0xffff, code::DELETE),
];

/// The key a keysym is on, and whether it is that key's shifted symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub code: u16,
    pub shifted: bool,
}

/// Looks a keysym up; `None` for keysyms a US keyboard has no key for.
pub fn lookup(keysym: u32) -> Option<Key> {
    let plain = |code| {
        Some(Key {
            code,
            shifted: false,
        })
    };
    if (0xffbe..=0xffc7).contains(&keysym) {
        return plain(code::F1 + (keysym - 0xffbe) as u16); // F1..F10
    }
    match keysym {
        0xffc8 => return plain(code::F11),
        0xffc9 => return plain(code::F12),
        _ => {}
    }
    if let Some(&(_, c)) = SPECIAL.iter().find(|(k, _)| *k == keysym) {
        return plain(c);
    }
    let ch = u8::try_from(keysym).ok()?;
    if ch.is_ascii_lowercase() {
        return LETTERS
            .iter()
            .find(|(l, _)| *l == ch)
            .map(|&(_, code)| Key {
                code,
                shifted: false,
            });
    }
    if ch.is_ascii_uppercase() {
        let lower = ch.to_ascii_lowercase();
        return LETTERS
            .iter()
            .find(|(l, _)| *l == lower)
            .map(|&(_, code)| Key {
                code,
                shifted: true,
            });
    }
    SYMBOLS.iter().find_map(|&(u, s, code)| {
        if u == ch {
            Some(Key {
                code,
                shifted: false,
            })
        } else if s == ch {
            Some(Key {
                code,
                shifted: true,
            })
        } else {
            None
        }
    })
}

/// Whether a key code is one of the shift keys.
pub fn is_shift(code: u16) -> bool {
    code == code::LEFTSHIFT || code == code::RIGHTSHIFT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_digits_and_symbols_map_to_us_keys() {
        assert_eq!(
            lookup(u32::from(b'a')),
            Some(Key {
                code: 30,
                shifted: false
            })
        );
        assert_eq!(
            lookup(u32::from(b'Q')),
            Some(Key {
                code: 16,
                shifted: true
            })
        );
        assert_eq!(lookup(u32::from(b'm')).unwrap().code, 50);
        assert_eq!(lookup(u32::from(b'0')).unwrap().code, 11);
        assert_eq!(
            lookup(u32::from(b'!')),
            Some(Key {
                code: 2,
                shifted: true
            })
        );
        assert_eq!(
            lookup(u32::from(b'?')),
            Some(Key {
                code: code::SLASH,
                shifted: true
            })
        );
        assert_eq!(
            lookup(u32::from(b'~')),
            Some(Key {
                code: code::GRAVE,
                shifted: true
            })
        );
        assert_eq!(
            lookup(u32::from(b' ')),
            Some(Key {
                code: code::SPACE,
                shifted: false
            })
        );
        // Every printable ASCII character has a key.
        for ch in 0x20u32..0x7f {
            assert!(lookup(ch).is_some(), "{:?}", ch as u8 as char);
        }
    }

    #[test]
    fn function_editing_modifier_and_keypad_keys() {
        assert_eq!(lookup(0xffbe).unwrap().code, code::F1);
        assert_eq!(lookup(0xffc7).unwrap().code, 68); // F10
        assert_eq!(lookup(0xffc9).unwrap().code, code::F12);
        assert_eq!(lookup(0xff0d).unwrap().code, code::ENTER);
        assert_eq!(lookup(0xff52).unwrap().code, code::UP);
        assert_eq!(lookup(0xffff).unwrap().code, code::DELETE);
        assert_eq!(lookup(0xffe2).unwrap().code, code::RIGHTSHIFT);
        assert_eq!(lookup(0xffec).unwrap().code, code::RIGHTMETA);
        assert_eq!(lookup(0xffb5).unwrap().code, code::KP5);
        assert_eq!(lookup(0xff8d).unwrap().code, code::KPENTER);
        assert_eq!(lookup(0x20ac), None, "the euro sign has no US key");
        assert_eq!(lookup(0xffcc), None, "F15");
    }
}
