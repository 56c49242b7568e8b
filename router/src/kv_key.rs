//! Names inside NATS key-value keys, which allow only letters, digits and `-/_=.`: a topic,
//! subscription or bucket name goes in as the lowercase hex of its UTF-8 bytes.

/// Returns `name` as lowercase hex.
pub(crate) fn encode(name: &str) -> String {
    name.bytes().map(|byte| format!("{byte:02x}")).collect()
}

/// Returns the name that [`encode`] made `hex` from, or `None` when `hex` is not hex of
/// UTF-8 text.
pub(crate) fn decode(hex: &str) -> Option<String> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for name in ["projects/p/topics/t", "a.b-c_d~e%f+g", "ünïcode", ""] {
            let hex = encode(name);
            assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()), "{hex}");
            assert_eq!(decode(&hex).as_deref(), Some(name));
        }
    }

    #[test]
    fn odd_length_and_non_hex_are_rejected() {
        assert_eq!(decode("abc"), None);
        assert_eq!(decode("zz"), None);
        assert_eq!(decode("ff"), None, "not UTF-8");
    }
}
