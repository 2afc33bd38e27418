//! Opaque cursors. A cursor names a position in the upstream's paging: the link of the upstream
//! page the position is in (the page's `@odata.nextLink` as the upstream gave it, or the first
//! page's own URL), the `odata.maxpagesize` that link was made with, and the index of the row in
//! that page. To continue, the gateway requests that link **unchanged** with the **same** page
//! size and follows the next links from there (contract §3): a Dataverse `$skiptoken` is a paging
//! cookie bound to its query and page size, so URLs are never rebuilt around it. The link is kept
//! relative to the service root, inside the signed payload.
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
//! everything before the tag. The key is read from `--cursor-key-file`, else kept in Redis under
//! `--redis-url` (created by the first replica: [`CursorKeySource::Shared`]), so that replicas
//! accept each other's cursors; else it is random per process. The query hint (the first bytes of the query's
//! SHA-256, covered by the tag like the rest) only chooses the error message: a cursor of another
//! query is told apart from one that was altered or issued under another key.
//!
//! Against an upstream that ignores `odata.maxpagesize` (`--upstream-paging top`) a cursor
//! carries the query's own link and the number of rows before the position instead
//! ([`Cursor::offset`]): the gateway continues with `$skip` and `$top` added to that signed link.
//!
//! A signed cursor is still checked for sense: its page size is one the upstream serves (1 to
//! [`MAX_PAGE_SIZE`]), its index lies inside such a page, and its link is a query on the list's
//! own entity set relative to the service root, so that no cursor can make the gateway call
//! another URL.

use crate::model::Entity;
use crate::odata::client::MAX_PAGE_SIZE;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The format of the cursors this gateway issues.
const VERSION: u8 = 2;
/// Bytes of the query's SHA-256 carried in the cursor (to name the error only).
const HINT_LEN: usize = 4;
/// Bytes of the HMAC-SHA256 kept.
const TAG_LEN: usize = 16;
/// The shortest key accepted from a key file.
pub const MIN_KEY_LEN: usize = 32;
/// Longest `after` value decoded: a cursor carries an upstream link, and Dataverse takes URLs of
/// up to 32 KB (base64 makes them a third longer).
const MAX_CURSOR_CHARS: usize = 48 * 1024;

/// The key cursors are signed with. Its `Debug` prints `***`: it must never reach a log line.
#[derive(Clone)]
pub struct CursorKey(Vec<u8>);

impl std::fmt::Debug for CursorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorKey(***)")
    }
}

/// Where the process's cursor key comes from (`/readyz` says it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CursorKeySource {
    /// `--cursor-key-file`: every replica given the file accepts the others' cursors.
    File,
    /// Kept in Redis (`--redis-url`), created by the first replica that started.
    Shared,
    /// A random key of this process (no key file, no Redis): cursors work on this process only.
    #[default]
    Process,
    /// A random key of this process because Redis could not give the shared one at start (`why`).
    ProcessFallback { why: String },
}

impl CursorKeySource {
    /// Its name in `/readyz`.
    pub fn name(&self) -> &'static str {
        match self {
            CursorKeySource::File => "file",
            CursorKeySource::Shared => "redis",
            CursorKeySource::Process | CursorKeySource::ProcessFallback { .. } => "process",
        }
    }
}

impl CursorKey {
    /// A fresh random key (32 bytes from the thread's CSPRNG): cursors stay valid for this
    /// process only.
    pub fn random() -> Self {
        CursorKey(rand::random::<[u8; 32]>().to_vec())
    }

    /// The key's bytes (to share it through Redis; never logged).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
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
    /// The upstream link of the page the position is in, relative to the service root (path and
    /// query, exactly as the upstream wrote them after the root).
    #[serde(rename = "l")]
    pub link: String,
    /// The `odata.maxpagesize` the link was made with, sent again with it.
    #[serde(rename = "s")]
    pub size: usize,
    /// The row's index in that page; `None`: before the page's first row (the cursor of the last
    /// row of the previous page).
    #[serde(rename = "i", skip_serializing_if = "Option::is_none", default)]
    pub index: Option<usize>,
    /// Top paging ([`crate::odata::calls::Paging::Top`]): how many rows of the query come before
    /// the position. The link is then the query itself (no `$top`, `$skip` or `$skiptoken`),
    /// continued with `$skip` set to this and a `$top`; `index` is `None` and `size` is the `$top`
    /// of the read the cursor came from.
    #[serde(rename = "o", skip_serializing_if = "Option::is_none", default)]
    pub offset: Option<usize>,
}

impl Cursor {
    /// The signed, base64url form of this position in `query`.
    pub fn encode(&self, key: &CursorKey, query: &QueryId) -> String {
        let mut bytes = Vec::with_capacity(64 + self.link.len());
        bytes.push(VERSION);
        bytes.extend_from_slice(query.hint());
        serde_json::to_writer(&mut bytes, self).expect("cursor serialises");
        let tag = key.mac(query, &bytes).finalize().into_bytes();
        bytes.extend_from_slice(&tag[..TAG_LEN]);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Decodes a cursor, checking that this gateway's key signed it for `query` (on
    /// `entity_set`) and that its position makes sense. The errors are for the client
    /// (`BAD_USER_INPUT`).
    pub fn decode(s: &str, key: &CursorKey, query: &QueryId, entity_set: &str) -> Result<Cursor, String> {
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
        if !(1..=MAX_PAGE_SIZE).contains(&c.size) || c.index.is_some_and(|i| i >= c.size) {
            return Err(format!(
                "`after` names row {} of an upstream page of {}, but pages hold at most {MAX_PAGE_SIZE} rows and the row must be inside the page; start again without `after`.",
                c.index.map_or_else(|| "-".to_string(), |i| i.to_string()),
                c.size
            ));
        }
        if !Self::link_is_on(&c.link, entity_set) || (c.offset.is_some() && !Self::is_plain_query(&c.link)) {
            return Err(not_ours());
        }
        Ok(c)
    }

    /// Whether `link` is a query on `entity_set`, relative to the service root: the set's name,
    /// then the query string or nothing. Nothing else (another set, a path, a scheme, a host) is.
    fn link_is_on(link: &str, entity_set: &str) -> bool {
        match link.strip_prefix(entity_set) {
            Some(rest) => rest.is_empty() || rest.starts_with('?'),
            None => false,
        }
    }

    /// Whether `link` is a query without paging options (`$top`, `$skip`, `$skiptoken`): what a
    /// top-paging cursor carries, to which the gateway adds its own `$top` and `$skip`.
    fn is_plain_query(link: &str) -> bool {
        let query = link.split_once('?').map_or("", |(_, q)| q);
        form_urlencoded::parse(query.as_bytes()).all(|(k, _)| !matches!(&*k, "$top" | "$skip" | "$skiptoken"))
    }

    /// How many rows of the cursor's page come before the resume point.
    pub fn resume_skip(&self) -> usize {
        self.index.map_or(0, |i| i.saturating_add(1))
    }

    /// An upstream link (absolute, as in `@odata.nextLink`) relative to `service_root`, or `None`
    /// when it is not under that root (then it is not followed).
    pub fn relative_link(service_root: &str, link: &str) -> Option<String> {
        if let Some(rest) = link.strip_prefix(service_root) {
            return Some(rest.to_string());
        }
        // The same origin written differently (case of the host, a default port).
        let (root, url) = (reqwest::Url::parse(service_root).ok()?, reqwest::Url::parse(link).ok()?);
        if root.origin() != url.origin() {
            return None;
        }
        let rest = url.path().strip_prefix(root.path())?;
        Some(match url.query() {
            Some(q) => format!("{rest}?{q}"),
            None => rest.to_string(),
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

    fn set() -> &'static str {
        &model().entities[0].entity_set
    }

    fn cursor() -> Cursor {
        Cursor {
            link: format!("{}?$select=a&$skiptoken=abc", set()),
            size: 10,
            index: Some(3),
            offset: None,
        }
    }

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    fn unb64(s: &str) -> Vec<u8> {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).unwrap()
    }

    fn signed(c: &Cursor, q: &QueryId) -> String {
        c.encode(&key(1), q)
    }

    #[test]
    fn cursors_round_trip() {
        let e = &model().entities[0];
        let q = QueryId::of(e, Some("x eq 1"), &[("a".into(), true)]);
        let c = cursor();
        let s = c.encode(&key(1), &q);
        assert_eq!(Cursor::decode(&s, &key(1), &q, set()).unwrap(), c);
        assert_eq!(c.resume_skip(), 4);
        let page_start = Cursor {
            link: format!("{}?$skiptoken=n", set()),
            size: 10,
            index: None,
            offset: None,
        };
        let s = page_start.encode(&key(1), &q);
        assert_eq!(Cursor::decode(&s, &key(1), &q, set()).unwrap(), page_start);
        assert_eq!(page_start.resume_skip(), 0);
        assert!(s.len() < 50 + 2 * page_start.link.len(), "compact: {s}");
    }

    #[test]
    fn every_altered_byte_is_refused() {
        let e = &model().entities[0];
        let q = QueryId::of(e, None, &[]);
        let bytes = unb64(&signed(&cursor(), &q));
        for i in 0..bytes.len() {
            let mut altered = bytes.clone();
            altered[i] ^= 0x01;
            let err = Cursor::decode(&b64(&altered), &key(1), &q, set()).unwrap_err();
            assert!(
                err.contains("not a cursor this gateway issued") || err.contains("different query"),
                "{err}"
            );
        }
        assert!(Cursor::decode(&b64(&bytes[..bytes.len() - 1]), &key(1), &q, set()).is_err());
        assert!(Cursor::decode("garbage!", &key(1), &q, set()).is_err());
        assert!(Cursor::decode("", &key(1), &q, set()).is_err());
    }

    #[test]
    fn unsigned_json_cursors_are_refused() {
        // Earlier formats, and a forged position: JSON alone is no cursor.
        let e = &model().entities[0];
        let q = QueryId::of(e, None, &[]);
        for forged in [
            r#"{"q":1,"t":null,"i":4999}"#,
            r#"{"i":4999}"#,
            r#"{"l":"x","s":5000,"i":4999}"#,
        ] {
            let err = Cursor::decode(&b64(forged.as_bytes()), &key(1), &q, set()).unwrap_err();
            assert!(err.contains("not a cursor this gateway issued"), "{err}");
        }
    }

    #[test]
    fn a_cursor_of_another_key_is_refused() {
        let e = &model().entities[0];
        let q = QueryId::of(e, None, &[]);
        let s = signed(&cursor(), &q);
        let err = Cursor::decode(&s, &key(2), &q, set()).unwrap_err();
        assert!(err.contains("not a cursor this gateway issued"), "{err}");
        let random = CursorKey::random();
        assert!(Cursor::decode(&cursor().encode(&random, &q), &CursorKey::random(), &q, set()).is_err());
        assert!(Cursor::decode(&cursor().encode(&random, &q), &random, &q, set()).is_ok());
    }

    #[test]
    fn a_cursor_of_another_query_is_refused() {
        let (a, b) = (&model().entities[0], &model().entities[1]);
        let q = QueryId::of(a, Some("x eq 1"), &[]);
        let s = signed(&cursor(), &q);
        let others = [
            QueryId::of(a, None, &[]),
            QueryId::of(a, Some("x eq 2"), &[]),
            QueryId::of(a, Some("x eq 1"), &[("x".into(), false)]),
            QueryId::of(b, Some("x eq 1"), &[]),
        ];
        for other in others {
            assert_ne!(other, q);
            let err = Cursor::decode(&s, &key(1), &other, set()).unwrap_err();
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
    fn senseless_positions_are_refused_even_when_signed() {
        let e = &model().entities[0];
        let q = QueryId::of(e, None, &[]);
        let at = |size: usize, index: Option<usize>| Cursor {
            link: set().to_string(),
            size,
            index,
            offset: None,
        };
        for c in [
            at(0, None),
            at(MAX_PAGE_SIZE + 1, None),
            at(usize::MAX, Some(3)),
            at(10, Some(10)),
            at(MAX_PAGE_SIZE, Some(MAX_PAGE_SIZE)),
            at(MAX_PAGE_SIZE, Some(usize::MAX)),
        ] {
            let err = Cursor::decode(&signed(&c, &q), &key(1), &q, set()).unwrap_err();
            assert!(err.contains("at most 5000"), "{err}");
            // Nothing overflows even for a position that was never decoded.
            let _ = c.resume_skip();
        }
        let last = at(MAX_PAGE_SIZE, Some(MAX_PAGE_SIZE - 1));
        assert_eq!(Cursor::decode(&signed(&last, &q), &key(1), &q, set()).unwrap(), last);
        // An index beyond u64 does not parse at all.
        let mut bytes = vec![VERSION];
        bytes.extend_from_slice(q.hint());
        bytes.extend_from_slice(br#"{"l":"x","s":1,"i":99999999999999999999999}"#);
        let tag = key(1).mac(&q, &bytes).finalize().into_bytes();
        bytes.extend_from_slice(&tag[..TAG_LEN]);
        assert!(Cursor::decode(&b64(&bytes), &key(1), &q, set()).is_err());
    }

    #[test]
    fn links_off_the_list_s_entity_set_are_refused_even_when_signed() {
        let e = &model().entities[0];
        let other = &model().entities[1].entity_set;
        let q = QueryId::of(e, None, &[]);
        for link in [
            "http://evil.example/x".to_string(),
            "//evil.example/x".to_string(),
            "/api/data/v9.2/x".to_string(),
            format!("{other}?$select=a"),
            format!("{}/../{other}", set()),
            format!("{}(00000000-0000-0000-0000-000000000001)", set()),
            format!("{}x?$select=a", set()),
            String::new(),
        ] {
            let c = Cursor {
                link: link.clone(),
                size: 5,
                index: None,
                offset: None,
            };
            let err = Cursor::decode(&signed(&c, &q), &key(1), &q, set()).unwrap_err();
            assert!(err.contains("not a cursor this gateway issued"), "{link}: {err}");
        }
        for link in [
            set().to_string(),
            format!("{}?$select=a&$skiptoken=%3Ccookie%3E", set()),
        ] {
            let c = Cursor {
                link,
                size: 5,
                index: None,
                offset: None,
            };
            assert!(Cursor::decode(&signed(&c, &q), &key(1), &q, set()).is_ok());
        }
    }

    #[test]
    fn next_links_are_made_relative_to_the_service_root() {
        let root = "https://org.crm.dynamics.com/api/data/v9.2/";
        assert_eq!(
            Cursor::relative_link(
                root,
                "https://org.crm.dynamics.com/api/data/v9.2/s?$select=a&$skiptoken=%3Cc%3E"
            )
            .as_deref(),
            Some("s?$select=a&$skiptoken=%3Cc%3E")
        );
        assert_eq!(
            Cursor::relative_link(root, "https://ORG.crm.dynamics.com:443/api/data/v9.2/s?$skiptoken=1").as_deref(),
            Some("s?$skiptoken=1")
        );
        for foreign in [
            "https://evil.example/api/data/v9.2/s?$skiptoken=1",
            "http://org.crm.dynamics.com/api/data/v9.2/s",
            "https://org.crm.dynamics.com/api/data/v9.1/s",
            "not a url",
        ] {
            assert_eq!(Cursor::relative_link(root, foreign), None, "{foreign}");
        }
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
        assert!(Cursor::decode(&s, &CursorKey::new(vec![b'k'; 32]).unwrap(), &q, set()).is_ok());
        std::fs::write(&dir, "short\n").unwrap();
        let err = CursorKey::from_file(&dir).unwrap_err();
        assert!(err.contains("at least 32 bytes") && !err.contains("short\n"), "{err}");
        std::fs::remove_file(&dir).unwrap();
    }

    #[test]
    fn a_top_paging_cursor_carries_the_plain_query_and_an_offset() {
        let q = QueryId::of(&model().entities[0], None, &[]);
        let top = Cursor {
            link: format!("{}?$select=a&$count=true", set()),
            size: 4,
            index: None,
            offset: Some(9),
        };
        let s = top.encode(&key(1), &q);
        assert_eq!(Cursor::decode(&s, &key(1), &q, set()).unwrap(), top);
        // The gateway adds its own $top and $skip: a signed link that already pages is not one
        // it issued.
        for link in ["?$top=3", "?$skip=3", "?$select=a&$skiptoken=x", "?%24skip=3"] {
            let c = Cursor {
                link: format!("{}{link}", set()),
                ..top.clone()
            };
            let err = Cursor::decode(&c.encode(&key(1), &q), &key(1), &q, set()).unwrap_err();
            assert!(err.contains("not a cursor this gateway issued"), "{link}: {err}");
        }
    }
}
