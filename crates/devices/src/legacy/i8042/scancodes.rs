//! Linux evdev key codes to PS/2 scan codes: set 2 (what an MF2 keyboard
//! sends), set 1 (what it sends when told to, and what the controller's
//! translation turns set 2 into), and that translation itself.
//!
//! This module knows key codes and byte sequences only: nothing about
//! queues, the controller's registers or where key events come from.

/// One key: its evdev code, its set 1 and set 2 codes, and whether both
/// sets prefix it with 0xe0.
struct Key {
    evdev: u16,
    set1: u8,
    set2: u8,
    extended: bool,
}

const fn k(evdev: u16, set1: u8, set2: u8) -> Key {
    Key {
        evdev,
        set1,
        set2,
        extended: false,
    }
}

const fn e(evdev: u16, set1: u8, set2: u8) -> Key {
    Key {
        evdev,
        set1,
        set2,
        extended: true,
    }
}

/// evdev code for Print Screen / SysRq and Pause, which send sequences.
pub const KEY_SYSRQ: u16 = 99;
pub const KEY_PAUSE: u16 = 119;

/// The 104/105-key PC keyboard plus the common multimedia keys.
#[rustfmt::skip]
const KEYS: &[Key] = &[
    k(1, 0x01, 0x76),   // Esc
    k(2, 0x02, 0x16), k(3, 0x03, 0x1e), k(4, 0x04, 0x26), k(5, 0x05, 0x25),
    k(6, 0x06, 0x2e), k(7, 0x07, 0x36), k(8, 0x08, 0x3d), k(9, 0x09, 0x3e),
    k(10, 0x0a, 0x46), k(11, 0x0b, 0x45), // 1 .. 0
    k(12, 0x0c, 0x4e),  // -
    k(13, 0x0d, 0x55),  // =
    k(14, 0x0e, 0x66),  // Backspace
    k(15, 0x0f, 0x0d),  // Tab
    k(16, 0x10, 0x15), k(17, 0x11, 0x1d), k(18, 0x12, 0x24), k(19, 0x13, 0x2d),
    k(20, 0x14, 0x2c), k(21, 0x15, 0x35), k(22, 0x16, 0x3c), k(23, 0x17, 0x43),
    k(24, 0x18, 0x44), k(25, 0x19, 0x4d), // Q .. P
    k(26, 0x1a, 0x54),  // [
    k(27, 0x1b, 0x5b),  // ]
    k(28, 0x1c, 0x5a),  // Enter
    k(29, 0x1d, 0x14),  // Left Ctrl
    k(30, 0x1e, 0x1c), k(31, 0x1f, 0x1b), k(32, 0x20, 0x23), k(33, 0x21, 0x2b),
    k(34, 0x22, 0x34), k(35, 0x23, 0x33), k(36, 0x24, 0x3b), k(37, 0x25, 0x42),
    k(38, 0x26, 0x4b), // A .. L
    k(39, 0x27, 0x4c),  // ;
    k(40, 0x28, 0x52),  // '
    k(41, 0x29, 0x0e),  // `
    k(42, 0x2a, 0x12),  // Left Shift
    k(43, 0x2b, 0x5d),  // backslash
    k(44, 0x2c, 0x1a), k(45, 0x2d, 0x22), k(46, 0x2e, 0x21), k(47, 0x2f, 0x2a),
    k(48, 0x30, 0x32), k(49, 0x31, 0x31), k(50, 0x32, 0x3a), // Z .. M
    k(51, 0x33, 0x41),  // ,
    k(52, 0x34, 0x49),  // .
    k(53, 0x35, 0x4a),  // /
    k(54, 0x36, 0x59),  // Right Shift
    k(55, 0x37, 0x7c),  // Keypad *
    k(56, 0x38, 0x11),  // Left Alt
    k(57, 0x39, 0x29),  // Space
    k(58, 0x3a, 0x58),  // Caps Lock
    k(59, 0x3b, 0x05), k(60, 0x3c, 0x06), k(61, 0x3d, 0x04), k(62, 0x3e, 0x0c),
    k(63, 0x3f, 0x03), k(64, 0x40, 0x0b), k(65, 0x41, 0x83), k(66, 0x42, 0x0a),
    k(67, 0x43, 0x01), k(68, 0x44, 0x09), // F1 .. F10
    k(69, 0x45, 0x77),  // Num Lock
    k(70, 0x46, 0x7e),  // Scroll Lock
    k(71, 0x47, 0x6c), k(72, 0x48, 0x75), k(73, 0x49, 0x7d), // Keypad 7 8 9
    k(74, 0x4a, 0x7b),  // Keypad -
    k(75, 0x4b, 0x6b), k(76, 0x4c, 0x73), k(77, 0x4d, 0x74), // Keypad 4 5 6
    k(78, 0x4e, 0x79),  // Keypad +
    k(79, 0x4f, 0x69), k(80, 0x50, 0x72), k(81, 0x51, 0x7a), // Keypad 1 2 3
    k(82, 0x52, 0x70),  // Keypad 0
    k(83, 0x53, 0x71),  // Keypad .
    k(86, 0x56, 0x61),  // the 102nd key (< > on ISO keyboards)
    k(87, 0x57, 0x78),  // F11
    k(88, 0x58, 0x07),  // F12
    k(117, 0x59, 0x0f), // Keypad =
    e(96, 0x1c, 0x5a),  // Keypad Enter
    e(97, 0x1d, 0x14),  // Right Ctrl
    e(98, 0x35, 0x4a),  // Keypad /
    e(100, 0x38, 0x11), // Right Alt (AltGr)
    e(102, 0x47, 0x6c), // Home
    e(103, 0x48, 0x75), // Up
    e(104, 0x49, 0x7d), // Page Up
    e(105, 0x4b, 0x6b), // Left
    e(106, 0x4d, 0x74), // Right
    e(107, 0x4f, 0x69), // End
    e(108, 0x50, 0x72), // Down
    e(109, 0x51, 0x7a), // Page Down
    e(110, 0x52, 0x70), // Insert
    e(111, 0x53, 0x71), // Delete
    e(113, 0x20, 0x23), // Mute
    e(114, 0x2e, 0x21), // Volume Down
    e(115, 0x30, 0x32), // Volume Up
    e(116, 0x5e, 0x37), // Power
    e(125, 0x5b, 0x1f), // Left Meta (Windows)
    e(126, 0x5c, 0x27), // Right Meta
    e(127, 0x5d, 0x2f), // Compose (Menu)
];

/// The scan code sets a keyboard can be told to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanSet {
    Set1,
    Set2,
}

impl ScanSet {
    /// The byte a keyboard puts in its buffer when it overflows.
    pub fn overrun(self) -> u8 {
        match self {
            ScanSet::Set1 => 0xff,
            ScanSet::Set2 => 0x00,
        }
    }
}

fn lookup(code: u16) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.evdev == code)
}

/// Append the bytes key `code` going down (or up) sends in `set`; returns
/// false, appending nothing, for keys this keyboard does not have (and for
/// Pause going up, which sends nothing).
pub fn encode(code: u16, down: bool, set: ScanSet, out: &mut Vec<u8>) -> bool {
    match (code, set, down) {
        (KEY_PAUSE, _, false) => return false,
        (KEY_PAUSE, ScanSet::Set1, true) => {
            out.extend_from_slice(&[0xe1, 0x1d, 0x45, 0xe1, 0x9d, 0xc5]);
            return true;
        }
        (KEY_PAUSE, ScanSet::Set2, true) => {
            out.extend_from_slice(&[0xe1, 0x14, 0x77, 0xe1, 0xf0, 0x14, 0xf0, 0x77]);
            return true;
        }
        (KEY_SYSRQ, ScanSet::Set1, true) => {
            out.extend_from_slice(&[0xe0, 0x2a, 0xe0, 0x37]);
            return true;
        }
        (KEY_SYSRQ, ScanSet::Set1, false) => {
            out.extend_from_slice(&[0xe0, 0xb7, 0xe0, 0xaa]);
            return true;
        }
        (KEY_SYSRQ, ScanSet::Set2, true) => {
            out.extend_from_slice(&[0xe0, 0x12, 0xe0, 0x7c]);
            return true;
        }
        (KEY_SYSRQ, ScanSet::Set2, false) => {
            out.extend_from_slice(&[0xe0, 0xf0, 0x7c, 0xe0, 0xf0, 0x12]);
            return true;
        }
        _ => {}
    }
    let Some(key) = lookup(code) else {
        return false;
    };
    if key.extended {
        out.push(0xe0);
    }
    match set {
        ScanSet::Set1 => out.push(if down { key.set1 } else { key.set1 | 0x80 }),
        ScanSet::Set2 => {
            if !down {
                out.push(0xf0);
            }
            out.push(key.set2);
        }
    }
    true
}

/// The controller's set 2 to set 1 translation of one byte (without the
/// 0xf0 break prefix, which the controller folds into the next byte).
/// Bytes that are no key's code (prefixes, replies such as 0xfa) pass
/// through unchanged; the set 2 overrun code 0x00 becomes set 1's 0xff.
pub fn translate(b: u8) -> u8 {
    if b == 0x00 {
        return 0xff;
    }
    KEYS.iter().find(|k| k.set2 == b).map_or(b, |k| k.set1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(code: u16, down: bool, set: ScanSet) -> Vec<u8> {
        let mut v = Vec::new();
        assert!(encode(code, down, set, &mut v), "key {code}");
        v
    }

    /// Translate a set 2 stream as the controller does.
    fn translated(set2: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut brk = false;
        for &b in set2 {
            if b == 0xf0 {
                brk = true;
                continue;
            }
            out.push(translate(b) | if brk { 0x80 } else { 0 });
            brk = false;
        }
        out
    }

    /// (evdev code, set 1 make, set 2 make) from the scan code tables of
    /// the PS/2 keyboard documentation, written independently of `KEYS`.
    #[rustfmt::skip]
    const TABLE: &[(u16, &[u8], &[u8])] = &[
        (1, &[0x01], &[0x76]),          // Esc
        (2, &[0x02], &[0x16]),          // 1
        (11, &[0x0b], &[0x45]),         // 0
        (16, &[0x10], &[0x15]),         // Q
        (28, &[0x1c], &[0x5a]),         // Enter
        (30, &[0x1e], &[0x1c]),         // A
        (42, &[0x2a], &[0x12]),         // Left Shift
        (57, &[0x39], &[0x29]),         // Space
        (59, &[0x3b], &[0x05]),         // F1
        (65, &[0x41], &[0x83]),         // F7
        (88, &[0x58], &[0x07]),         // F12
        (96, &[0xe0, 0x1c], &[0xe0, 0x5a]),  // Keypad Enter
        (97, &[0xe0, 0x1d], &[0xe0, 0x14]),  // Right Ctrl
        (100, &[0xe0, 0x38], &[0xe0, 0x11]), // AltGr
        (103, &[0xe0, 0x48], &[0xe0, 0x75]), // Up
        (108, &[0xe0, 0x50], &[0xe0, 0x72]), // Down
        (111, &[0xe0, 0x53], &[0xe0, 0x71]), // Delete
        (125, &[0xe0, 0x5b], &[0xe0, 0x1f]), // Left Meta
    ];

    #[test]
    fn make_codes_match_the_tables() {
        for &(code, s1, s2) in TABLE {
            assert_eq!(bytes(code, true, ScanSet::Set1), s1, "set 1 make of {code}");
            assert_eq!(bytes(code, true, ScanSet::Set2), s2, "set 2 make of {code}");
        }
    }

    #[test]
    fn break_codes() {
        assert_eq!(bytes(30, false, ScanSet::Set1), [0x9e]);
        assert_eq!(bytes(30, false, ScanSet::Set2), [0xf0, 0x1c]);
        assert_eq!(bytes(103, false, ScanSet::Set1), [0xe0, 0xc8]);
        assert_eq!(bytes(103, false, ScanSet::Set2), [0xe0, 0xf0, 0x75]);
    }

    #[test]
    fn print_screen_and_pause_sequences() {
        assert_eq!(
            bytes(KEY_SYSRQ, true, ScanSet::Set2),
            [0xe0, 0x12, 0xe0, 0x7c]
        );
        assert_eq!(
            bytes(KEY_SYSRQ, false, ScanSet::Set2),
            [0xe0, 0xf0, 0x7c, 0xe0, 0xf0, 0x12]
        );
        assert_eq!(
            bytes(KEY_SYSRQ, true, ScanSet::Set1),
            [0xe0, 0x2a, 0xe0, 0x37]
        );
        assert_eq!(
            bytes(KEY_PAUSE, true, ScanSet::Set2),
            [0xe1, 0x14, 0x77, 0xe1, 0xf0, 0x14, 0xf0, 0x77]
        );
        let mut v = Vec::new();
        assert!(!encode(KEY_PAUSE, false, ScanSet::Set2, &mut v));
        assert!(v.is_empty(), "Pause has no break code");
    }

    #[test]
    fn translating_set_2_gives_set_1_for_every_key() {
        for code in 0..256u16 {
            for down in [true, false] {
                let mut s2 = Vec::new();
                if !encode(code, down, ScanSet::Set2, &mut s2) {
                    continue;
                }
                let mut s1 = Vec::new();
                assert!(encode(code, down, ScanSet::Set1, &mut s1));
                assert_eq!(translated(&s2), s1, "key {code} down={down}");
            }
        }
    }

    #[test]
    fn set_2_codes_translate_unambiguously() {
        for a in KEYS {
            for b in KEYS {
                if a.set2 == b.set2 {
                    assert_eq!(a.set1, b.set1, "keys {} and {}", a.evdev, b.evdev);
                }
            }
        }
    }

    #[test]
    fn replies_and_unknown_keys() {
        assert_eq!(translate(0xfa), 0xfa);
        assert_eq!(translate(0xaa), 0xaa);
        assert_eq!(translate(0xab), 0xab);
        assert_eq!(translate(0x83), 0x41, "identify's 0x83 reads as 0x41");
        assert_eq!(translate(0x00), 0xff, "overrun");
        let mut v = Vec::new();
        assert!(!encode(0, true, ScanSet::Set2, &mut v));
        assert!(!encode(0x2ff, true, ScanSet::Set1, &mut v));
        assert!(v.is_empty());
    }
}
