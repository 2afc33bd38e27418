//! Opaque cursors. A cursor names a position in the upstream's paging: the `$skiptoken` of the
//! upstream page it came from, its index in that page, and (on a page's last row) the token of the
//! next page. It also carries a hash of the query, so a cursor from another query is refused
//! instead of silently returning the wrong rows. Clients never see upstream URLs.

use crate::model::Entity;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::hash::{Hash, Hasher};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    #[serde(rename = "q")]
    pub query: u64,
    #[serde(rename = "t")]
    pub token: Option<String>,
    #[serde(rename = "i")]
    pub index: usize,
    #[serde(rename = "n", skip_serializing_if = "Option::is_none", default)]
    pub next: Option<String>,
}

impl Cursor {
    /// A stable hash of what makes a list query (entity, filter, order).
    pub fn query_hash(entity: &Entity, filter: Option<&str>, orderby: &[(String, bool)]) -> u64 {
        // FNV-1a: stable across processes and releases, unlike DefaultHasher's seed-free but
        // unspecified algorithm.
        struct Fnv(u64);
        impl Hasher for Fnv {
            fn finish(&self) -> u64 {
                self.0
            }
            fn write(&mut self, bytes: &[u8]) {
                for b in bytes {
                    self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100000001b3);
                }
            }
        }
        let mut h = Fnv(0xcbf29ce484222325);
        entity.entity_set.hash(&mut h);
        filter.hash(&mut h);
        orderby.hash(&mut h);
        h.finish()
    }

    pub fn encode(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).expect("cursor serialises"))
    }

    /// Decodes a cursor and checks it belongs to the query.
    pub fn decode(s: &str, query: u64) -> Result<Cursor, String> {
        let bad = || {
            format!(
                "`after` is not a cursor this gateway issued: `{}`.",
                s.chars().take(40).collect::<String>()
            )
        };
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| bad())?;
        let c: Cursor = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        if c.query != query {
            return Err(
                "`after` is a cursor of a different query (its filter or order differ); start again without `after`."
                    .into(),
            );
        }
        Ok(c)
    }

    /// Where to resume after this cursor: the upstream token to start from and how many rows of
    /// that page to skip.
    pub fn resume_point(&self) -> (Option<String>, usize) {
        match &self.next {
            Some(next) => (Some(next.clone()), 0),
            None => (self.token.clone(), self.index + 1),
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

    #[test]
    fn cursors_round_trip_and_are_bound_to_their_query() {
        let e = &model().entities[0];
        let q = Cursor::query_hash(e, Some("x eq 1"), &[]);
        let c = Cursor {
            query: q,
            token: Some("abc".into()),
            index: 3,
            next: None,
        };
        assert_eq!(Cursor::decode(&c.encode(), q).unwrap(), c);
        assert!(Cursor::decode(&c.encode(), Cursor::query_hash(e, None, &[])).is_err());
        assert!(Cursor::decode("garbage!", q).is_err());
        assert_eq!(c.resume_point(), (Some("abc".into()), 4));
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
