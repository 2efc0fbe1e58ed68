//! VNC authentication: the server's random 16-byte challenge, DES-encrypted
//! by the client with the password as key (each key byte bit-reversed, as
//! every VNC implementation has it).
//!
//! Knows nothing of sockets.

use des::cipher::generic_array::GenericArray;
use des::cipher::{BlockEncrypt, KeyInit};
use des::Des;

/// A fresh random challenge.
pub fn challenge() -> [u8; 16] {
    let mut c = [0u8; 16];
    if getrandom::getrandom(&mut c).is_err() {
        // No OS randomness: fall back to the clock (still unpredictable
        // enough to avoid replay of a recorded response).
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        c.copy_from_slice(&t.to_le_bytes());
    }
    c
}

/// What a client knowing `password` answers to `challenge`.
pub fn response(password: &str, challenge: &[u8; 16]) -> [u8; 16] {
    let mut key = [0u8; 8];
    for (k, b) in key.iter_mut().zip(password.bytes()) {
        *k = b.reverse_bits();
    }
    let cipher = Des::new(GenericArray::from_slice(&key));
    let mut out = *challenge;
    for block in out.chunks_exact_mut(8) {
        cipher.encrypt_block(GenericArray::from_mut_slice(block));
    }
    out
}

/// Whether the client's answer is right (compared in constant time).
pub fn check(password: &str, challenge: &[u8; 16], answer: &[u8; 16]) -> bool {
    let want = response(password, challenge);
    want.iter()
        .zip(answer)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn des_response_matches_a_known_vector() {
        // Key "password" bit-reversed is 0e 86 ce ce ee f6 4e 26; the expected
        // bytes come from `openssl enc -des-ecb -K 0e86ceceeef64e26 -nopad`.
        let challenge: [u8; 16] = std::array::from_fn(|i| i as u8);
        let want = [
            0xb8, 0x66, 0x92, 0x41, 0x25, 0xc8, 0xee, 0xbb, 0x9d, 0xeb, 0xc1, 0xdb, 0x61, 0xc5,
            0x38, 0xe2,
        ];
        assert_eq!(response("password", &challenge), want);
        assert!(check("password", &challenge, &want));
        assert!(!check("passwore", &challenge, &want));
        assert!(
            check("password-longer-than-8", &challenge, &want),
            "only 8 bytes count"
        );
    }

    #[test]
    fn challenges_differ() {
        assert_ne!(challenge(), challenge());
    }
}
