//! Secrets: values that must never reach a log line, an error message or a `Debug` dump
//! (client secrets, shared JWT secrets, tokens), and the one-way fingerprints used instead of
//! them wherever a stable name for a credential is needed (cache partitions, request counters).

use sha2::{Digest, Sha256};

/// A string whose `Debug` and `Display` say `***`. Read it with [`Secret::expose`], only where it
/// is sent on (a token request body, an `Authorization` header).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

/// The SHA-256 of `value` in lowercase hex.
pub fn sha256_hex(value: &[u8]) -> String {
    Sha256::digest(value).iter().map(|b| format!("{b:02x}")).collect()
}

/// A stable 64-bit number from `value`: the first 8 bytes of its SHA-256 (for `ETag`s and
/// synthetic identifiers; the one hash of the code base, stable across builds and releases).
pub fn sha256_u64(value: &[u8]) -> u64 {
    let digest = Sha256::digest(value);
    u64::from_be_bytes(digest[..8].try_into().expect("a SHA-256 digest has 32 bytes"))
}

/// A stable, non-reversible short name for a credential: the first 16 hex digits of its SHA-256.
/// Stable across builds and restarts (idempotency keys are stored under it), unlike `std`'s hasher.
pub fn fingerprint(value: &str) -> String {
    sha256_hex(value.as_bytes())[..16].to_string()
}

/// Compares two byte strings in time that does not depend on where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "Secret(***) ***");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn fingerprints_are_stable_and_short() {
        // SHA-256("abc") starts ba7816bf8f01cfea.
        assert_eq!(fingerprint("abc"), "ba7816bf8f01cfea");
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
