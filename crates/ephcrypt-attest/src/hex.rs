//! Lowercase hex encoding and strict decoding.

use crate::error::{AttestError, Result};

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Lowercase hex of `bytes`.
#[must_use]
pub fn to_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Strict decoding: an even number of hex digits (either case), nothing else.
/// Used for document fields.
#[must_use]
pub(crate) fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some((nibble(pair[0])? << 4) | nibble(pair[1])?))
        .collect()
}

/// Decode hex typed by a person or copied from psql: surrounding whitespace is
/// ignored, and an optional `\x` prefix (PostgreSQL's `bytea` output format)
/// is accepted. `what` names the argument in the error.
///
/// # Errors
/// [`AttestError::BadHex`] with `what`.
pub fn parse_hex_arg(s: &str, what: &'static str) -> Result<Vec<u8>> {
    let s = s.trim();
    let s = s
        .strip_prefix("\\x")
        .or_else(|| s.strip_prefix("\\X"))
        .unwrap_or(s);
    decode_hex(s).ok_or(AttestError::BadHex(what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let all: Vec<u8> = (0..=255).collect();
        let h = to_hex(&all);
        assert_eq!(&h[..8], "00010203");
        assert_eq!(&h[h.len() - 4..], "feff");
        assert_eq!(decode_hex(&h).unwrap(), all);
        assert_eq!(decode_hex(&h.to_uppercase()).unwrap(), all);
    }

    #[test]
    fn strict_decode() {
        assert_eq!(decode_hex(""), Some(vec![]));
        assert_eq!(decode_hex("0"), None);
        assert_eq!(decode_hex("0g"), None);
        assert_eq!(decode_hex(" 00"), None);
        assert_eq!(decode_hex("\\x00"), None);
        assert_eq!(decode_hex("+1"), None);
    }

    #[test]
    fn arg_decode() {
        assert_eq!(parse_hex_arg(" \\xAb01\n", "k").unwrap(), vec![0xab, 0x01]);
        assert_eq!(parse_hex_arg("\\XAb", "k").unwrap(), vec![0xab]);
        assert_eq!(parse_hex_arg("ab01", "k").unwrap(), vec![0xab, 0x01]);
        assert_eq!(parse_hex_arg("ab 01", "k"), Err(AttestError::BadHex("k")));
        assert_eq!(
            parse_hex_arg("\\x\\xab", "k"),
            Err(AttestError::BadHex("k"))
        );
    }
}
