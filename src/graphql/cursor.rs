//! Opaque cursors. A cursor names a position in the upstream's paging: the `$skiptoken` of the
//! upstream page it came from, its index in that page, and (on a page's last row) the token of the
//! next page. Clients never see upstream URLs.
//!
//! Cursors are signed: only a cursor this gateway (or a replica sharing its key) issued, for the
//! same query, is accepted. The wire form is base64url (no padding) of
//!
//! ```text
//! version (1 byte) | query hint (4 bytes) | position (JSON) | tag (16 bytes)
//! ```
//!
//! where the tag is HMAC-SHA256, truncated to 128 bits (RFC 2104 §5: at least half the output), over
//! the SHA-256 of the query's identity (entity set, filter, order: [`QueryId`]) followed by
//! everything before the tag. The key is random per process, or read from `--cursor-key-file` so
//! that replicas accept each other's cursors. The query hint (the first bytes of the query's
//! SHA-256, covered by the tag like the rest) only chooses the error message: a cursor of another
//! query is told apart from one that was altered or issued under another key.
//!
//! A signed cursor is still checked for sense: an index at or beyond the upstream's largest page
//! ([`MAX_PAGE_SIZE`]) cannot have been issued, and is refused.

use crate::model::Entity;
use crate::odata::client::MAX_PAGE_SIZE;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The format of the cursors this gateway issues.
const VERSION: u8 = 1;
/// Bytes of the query's SHA-256 carried in the cursor (to name the error only).
const HINT_LEN: usize = 4;
/// Bytes of the HMAC-SHA256 kept.
const TAG_LEN: usize = 16;
/// The shortest key accepted from a key file.
pub const MIN_KEY_LEN: usize = 32;
/// Longest `after` value decoded (Dataverse paging cookies are a few hundred characters).
const MAX_CURSOR_CHARS: usize = 16 * 1024;

/// The key cursors are signed with. Its `Debug` prints `***`: it must never reach a log line.
#[derive(Clone)]
pub struct CursorKey(Vec<u8>);

impl std::fmt::Debug for CursorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorKey(***)")
    }
}

impl CursorKey {
    /// A fresh random key (32 bytes from the thread's CSPRNG): cursors stay valid for this
    /// process only.
    pub fn random() -> Self {
        CursorKey(rand::random::<[u8; 32]>().to_vec())
    }

    /// A key of at least [`MIN_KEY_LEN`] bytes.
    pub fn new(bytes: Vec<u8>) -> Result<Self, String> {
        if bytes.len() < MIN_KEY_LEN {
            return Err(format!(
                "a cursor key needs at least {MIN_KEY_LEN} bytes (got {})",
                bytes.len()
            ));
        }
        Ok(CursorKey(bytes))
    }

    /// Reads a key file: its bytes, trailing whitespace (a final newline) left out, at least
    /// [`MIN_KEY_LEN`] of them. Errors never quote the file's content.
    pub fn from_file(path: &std::path::Path) -> Result<Self, String> {
        let mut bytes =
            std::fs::read(path).map_err(|e| format!("cannot read the cursor key file {}: {e}", path.display()))?;
        while bytes.last().is_some_and(u8::is_ascii_whitespace) {
            bytes.pop();
        }
        Self::new(bytes).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn mac(&self, query: &QueryId, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(&query.0);
        mac.update(body);
        mac
    }
}

/// What makes a list query, for cursors: the SHA-256 of its entity set, filter and order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryId([u8; 32]);

impl QueryId {
    /// The identity of a list query (entity, compiled filter, order), stable across processes
    /// and releases. Every part is length-prefixed, so no two queries share an encoding.
    pub fn of(entity: &Entity, filter: Option<&str>, orderby: &[(String, bool)]) -> QueryId {
        fn field(h: &mut Sha256, bytes: &[u8]) {
            h.update((bytes.len() as u64).to_be_bytes());
            h.update(bytes);
        }
        let mut h = Sha256::new();
        h.update(b"ats-gateway list query\0");
        field(&mut h, entity.entity_set.as_bytes());
        match filter {
            None => h.update([0u8]),
            Some(f) => {
                h.update([1u8]);
                field(&mut h, f.as_bytes());
            }
        }
        h.update((orderby.len() as u64).to_be_bytes());
        for (property, descending) in orderby {
            field(&mut h, property.as_bytes());
            h.update([u8::from(*descending)]);
        }
        QueryId(h.finalize().into())
    }

    fn hint(&self) -> &[u8] {
        &self.0[..HINT_LEN]
    }
}

/// A position in a list query's upstream paging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// The `$skiptoken` of the upstream page the row came from (`None`: the first page).
    #[serde(rename = "t", skip_serializing_if = "Option::is_none", default)]
    pub token: Option<String>,
    /// The row's index in that page.
    #[serde(rename = "i")]
    pub index: usize,
    /// On a page's last row, the `$skiptoken` of the next upstream page.
    #[serde(rename = "n", skip_serializing_if = "Option::is_none", default)]
    pub next: Option<String>,
}

impl Cursor {
    /// The signed, base64url form of this position in `query`.
    pub fn encode(&self, key: &CursorKey, query: &QueryId) -> String {
        let mut bytes = Vec::with_capacity(64);
        bytes.push(VERSION);
        bytes.extend_from_slice(query.hint());
        serde_json::to_writer(&mut bytes, self).expect("cursor serialises");
        let tag = key.mac(query, &bytes).finalize().into_bytes();
        bytes.extend_from_slice(&tag[..TAG_LEN]);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Decodes a cursor, checking that this gateway's key signed it for `query` and that its
    /// position makes sense. The errors are for the client (`BAD_USER_INPUT`).
    pub fn decode(s: &str, key: &CursorKey, query: &QueryId) -> Result<Cursor, String> {
        let not_ours = || {
            "`after` is not a cursor this gateway issued (it was altered, or comes from another gateway or from before a restart); start again without `after`."
                .to_string()
        };
        if s.len() > MAX_CURSOR_CHARS {
            return Err(not_ours());
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| not_ours())?;
        if bytes.len() < 1 + HINT_LEN + TAG_LEN || bytes[0] != VERSION {
            return Err(not_ours());
        }
        let (body, tag) = bytes.split_at(bytes.len() - TAG_LEN);
        if key.mac(query, body).verify_truncated_left(tag).is_err() {
            if &body[1..1 + HINT_LEN] != query.hint() {
                return Err(
                    "`after` is a cursor of a different query (its filter or order differ); start again without `after`."
                        .into(),
                );
            }
            return Err(not_ours());
        }
        let c: Cursor = serde_json::from_slice(&body[1 + HINT_LEN..]).map_err(|_| not_ours())?;
        if c.index >= MAX_PAGE_SIZE {
            return Err(format!(
                "`after` names row {} of an upstream page, but pages hold at most {MAX_PAGE_SIZE} rows; start again without `after`.",
                c.index
            ));
        }
        Ok(c)
    }

    /// Where to resume after this cursor: the upstream token to start from and how many rows of
    /// that page to skip (at most [`MAX_PAGE_SIZE`]).
    pub fn resume_point(&self) -> (Option<String>, usize) {
        match &self.next {
            Some(next) => (Some(next.clone()), 0),
            None => (self.token.clone(), self.index.saturating_add(1).min(MAX_PAGE_SIZE)),
        }
    }

    /// The `$skiptoken` value of an `@odata.nextLink`.
    pub fn skiptoken_of(next_link: &str) -> Option<String> {
        let query = next_link.split_once('?')?.1;
        query.split('&').find_map(|kv| {
            kv.strip_prefix("$skiptoken=")
                .or_else(|| kv.strip_prefix("%24skiptoken="))
                .map(|v| percent_encoding::percent_decode_str(v).decode_utf8_lossy().into_owned())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::model;

    fn key(byte: u8) -> CursorKey {
        CursorKey::new(vec![byte; 32]).unwrap()
    }

    fn cursor() -> Cursor {
        Cursor {
            token: Some("abc".into()),
            index: 3,
            next: None,
        }
    }

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    fn unb64(s: &str) -> Vec<u8> {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).unwrap()
    }

    #[test]
    fn cursors_round_trip() {
        let e = &model().entities[0];
        let q = QueryId::of(e, Some("x eq 1"), &[("a".into(), true)]);
        let c = cursor();
        let s = c.encode(&key(1), &q);
        assert_eq!(Cursor::decode(&s, &key(1), &q).unwrap(), c);
        assert_eq!(c.resume_point(), (Some("abc".into()), 4));
        let first_page = Cursor {
            token: None,
            index: 0,
            next: Some("n".into()),
        };
        let s = first_page.encode(&key(1), &q);
        assert_eq!(Cursor::decode(&s, &key(1), &q).unwrap(), first_page);
        assert_eq!(first_page.resume_point(), (Some("n".into()), 0));
        assert!(s.len() < 50, "compact: {s}");
    }

    #[test]
    fn every_altered_byte_is_refused() {
        let e = &model().entities[0];
        let q = QueryId::of(e, None, &[]);
        let bytes = unb64(&cursor().encode(&key(1), &q));
        for i in 0..bytes.len() {
            let mut altered = bytes.clone();
            altered[i] ^= 0x01;
            let err = Cursor::decode(&b64(&altered), &key(1), &q).unwrap_err();
            assert!(
                err.contains("not a cursor this gateway issued") || err.contains("different query"),
                "{err}"
            );
        }
        assert!(Cursor::decode(&b64(&bytes[..bytes.len() - 1]), &key(1), &q).is_err());
        assert!(Cursor::decode("garbage!", &key(1), &q).is_err());
        assert!(Cursor::decode("", &key(1), &q).is_err());
    }

    #[test]
    fn unsigned_json_cursors_are_refused() {
        // The format before signing, and a forged position: JSON alone is no cursor.
        let e = &model().entities[0];
        let q = QueryId::of(e, None, &[]);
        for forged in [r#"{"q":1,"t":null,"i":4999}"#, r#"{"i":4999}"#] {
            let err = Cursor::decode(&b64(forged.as_bytes()), &key(1), &q).unwrap_err();
            assert!(err.contains("not a cursor this gateway issued"), "{err}");
        }
    }

    #[test]
    fn a_cursor_of_another_key_is_refused() {
        let e = &model().entities[0];
        let q = QueryId::of(e, None, &[]);
        let s = cursor().encode(&key(1), &q);
        let err = Cursor::decode(&s, &key(2), &q).unwrap_err();
        assert!(err.contains("not a cursor this gateway issued"), "{err}");
        let random = CursorKey::random();
        assert!(Cursor::decode(&cursor().encode(&random, &q), &CursorKey::random(), &q).is_err());
        assert!(Cursor::decode(&cursor().encode(&random, &q), &random, &q).is_ok());
    }

    #[test]
    fn a_cursor_of_another_query_is_refused() {
        let (a, b) = (&model().entities[0], &model().entities[1]);
        let q = QueryId::of(a, Some("x eq 1"), &[]);
        let s = cursor().encode(&key(1), &q);
        let others = [
            QueryId::of(a, None, &[]),
            QueryId::of(a, Some("x eq 2"), &[]),
            QueryId::of(a, Some("x eq 1"), &[("x".into(), false)]),
            QueryId::of(b, Some("x eq 1"), &[]),
        ];
        for other in others {
            assert_ne!(other, q);
            let err = Cursor::decode(&s, &key(1), &other).unwrap_err();
            assert!(err.contains("different query"), "{err}");
        }
        // Length prefixes: moving bytes between parts makes another query.
        assert_ne!(
            QueryId::of(a, Some("ab"), &[("c".into(), false)]),
            QueryId::of(a, Some("a"), &[("bc".into(), false)])
        );
        assert_ne!(QueryId::of(a, None, &[]), QueryId::of(a, Some(""), &[]));
    }

    #[test]
    fn huge_or_senseless_indexes_are_refused_even_when_signed() {
        let e = &model().entities[0];
        let q = QueryId::of(e, None, &[]);
        for index in [MAX_PAGE_SIZE, MAX_PAGE_SIZE + 1, u32::MAX as usize, usize::MAX] {
            let c = Cursor {
                token: None,
                index,
                next: None,
            };
            let err = Cursor::decode(&c.encode(&key(1), &q), &key(1), &q).unwrap_err();
            assert!(err.contains("at most 5000"), "{err}");
            // Nothing overflows even for a position that was never decoded.
            assert!(c.resume_point().1 <= MAX_PAGE_SIZE);
        }
        let last = Cursor {
            token: None,
            index: MAX_PAGE_SIZE - 1,
            next: None,
        };
        assert_eq!(Cursor::decode(&last.encode(&key(1), &q), &key(1), &q).unwrap(), last);
        // An index beyond u64 does not parse at all.
        let mut bytes = vec![VERSION];
        bytes.extend_from_slice(q.hint());
        bytes.extend_from_slice(br#"{"i":99999999999999999999999}"#);
        let tag = key(1).mac(&q, &bytes).finalize().into_bytes();
        bytes.extend_from_slice(&tag[..TAG_LEN]);
        assert!(Cursor::decode(&b64(&bytes), &key(1), &q).is_err());
    }

    #[test]
    fn keys_are_checked_and_never_printed() {
        assert!(CursorKey::new(vec![7; 31]).is_err());
        let k = key(0x41);
        assert_eq!(format!("{k:?}"), "CursorKey(***)");
        let dir = std::env::temp_dir().join(format!("cursor-key-{}", uuid::Uuid::new_v4()));
        std::fs::write(&dir, format!("{}\n", "k".repeat(32))).unwrap();
        let from_file = CursorKey::from_file(&dir).unwrap();
        let q = QueryId::of(&model().entities[0], None, &[]);
        let s = cursor().encode(&from_file, &q);
        assert!(Cursor::decode(&s, &CursorKey::new(vec![b'k'; 32]).unwrap(), &q).is_ok());
        std::fs::write(&dir, "short\n").unwrap();
        let err = CursorKey::from_file(&dir).unwrap_err();
        assert!(err.contains("at least 32 bytes") && !err.contains("short\n"), "{err}");
        std::fs::remove_file(&dir).unwrap();
    }

    #[test]
    fn skiptoken_is_read_from_next_links() {
        assert_eq!(
            Cursor::skiptoken_of("http://x/api/data/v9.2/s?$select=a&$skiptoken=%3Ccookie%3E").as_deref(),
            Some("<cookie>")
        );
        assert_eq!(Cursor::skiptoken_of("http://x/s?$select=a"), None);
    }
}
