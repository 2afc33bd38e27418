//! The memory of one watched set and the diff of a fresh read against it.
//!
//! Per record the snapshot keeps its primary key (a GUID as a `u128`), a 64-bit content hash
//! and a 16-bit hash per watched property (to name the changed fields): 24 bytes and two per
//! property, never the record itself. Hashes are FNV-1a over the properties' JSON, stable across
//! processes, so that replicas watching the same set compute the same event ids.

use crate::odata::record::Props;
use serde_json::Value as Json;
use std::collections::HashMap;

/// What happened to a record between two reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    Created,
    Updated,
    Deleted,
}

impl ChangeKind {
    /// The GraphQL enum value (`CREATED`, `UPDATED`, `DELETED`).
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Created => "CREATED",
            ChangeKind::Updated => "UPDATED",
            ChangeKind::Deleted => "DELETED",
        }
    }
}

/// One difference found by [`Snapshot::apply`].
#[derive(Debug, Clone)]
pub struct Change {
    pub kind: ChangeKind,
    pub key: u128,
    /// Indexes (into the snapshot's watched properties) of the properties whose value changed;
    /// empty for `Created` and `Deleted`.
    pub changed: Vec<usize>,
    /// The record's content hash now (its last one for `Deleted`).
    pub hash: u64,
    /// The record as read (`None` for `Deleted`).
    pub row: Option<crate::odata::Record>,
}

struct Entry {
    hash: u64,
    fields: Box<[u16]>,
}

/// The keys and hashes of a watched set.
pub struct Snapshot {
    primary_key: String,
    properties: Vec<String>,
    records: HashMap<u128, Entry>,
}

impl Snapshot {
    /// An empty snapshot of records keyed by `primary_key`, hashing `properties` (upstream
    /// names, in a fixed order).
    pub fn new(primary_key: String, properties: Vec<String>) -> Snapshot {
        Snapshot {
            primary_key,
            properties,
            records: HashMap::new(),
        }
    }

    /// The watched properties, in the order [`Change::changed`] indexes.
    pub fn properties(&self) -> &[String] {
        &self.properties
    }

    /// How many records the snapshot holds.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Replaces the memory with `rows` (a complete read of the set) and returns what changed:
    /// creations and updates in the order of `rows`, then deletions by key. A row without a
    /// GUID primary key is an error (the model's keys are GUIDs).
    pub fn apply(&mut self, rows: &[crate::odata::Record]) -> Result<Vec<Change>, String> {
        let mut next = HashMap::with_capacity(rows.len());
        let mut changes = Vec::new();
        for row in rows {
            let key = record_key(row, &self.primary_key)?;
            let entry = self.entry(row);
            match self.records.remove(&key) {
                None => changes.push(Change {
                    kind: ChangeKind::Created,
                    key,
                    changed: Vec::new(),
                    hash: entry.hash,
                    row: Some(row.clone()),
                }),
                Some(old) if old.hash != entry.hash => changes.push(Change {
                    kind: ChangeKind::Updated,
                    key,
                    changed: changed_fields(&old, &entry),
                    hash: entry.hash,
                    row: Some(row.clone()),
                }),
                Some(_) => {}
            }
            next.insert(key, entry);
        }
        let mut gone: Vec<(u128, Entry)> = std::mem::replace(&mut self.records, next).into_iter().collect();
        gone.sort_by_key(|(k, _)| *k);
        changes.extend(gone.into_iter().map(|(key, old)| Change {
            kind: ChangeKind::Deleted,
            key,
            changed: Vec::new(),
            hash: old.hash,
            row: None,
        }));
        Ok(changes)
    }

    /// The content hash of `row`, as [`Change::hash`] has it.
    pub fn content_hash(&self, row: &Props) -> u64 {
        self.entry(row).hash
    }

    fn entry(&self, row: &Props) -> Entry {
        let mut all = Fnv::new();
        let fields = self
            .properties
            .iter()
            .map(|p| {
                let mut h = Fnv::new();
                h.write_value(row.get(p).unwrap_or(&Json::Null));
                all.write(p.as_bytes());
                all.write(&h.0.to_le_bytes());
                fold16(h.0)
            })
            .collect();
        Entry { hash: all.0, fields }
    }
}

/// The properties whose 16-bit hashes differ; when none does (a collision of every field's
/// hash, about one in 65,536 per changed field), all of them, rather than none.
fn changed_fields(old: &Entry, new: &Entry) -> Vec<usize> {
    let changed: Vec<usize> = (0..new.fields.len())
        .filter(|&i| old.fields.get(i) != new.fields.get(i))
        .collect();
    if changed.is_empty() {
        (0..new.fields.len()).collect()
    } else {
        changed
    }
}

/// A row's primary key as a `u128`.
pub fn record_key(row: &Props, primary_key: &str) -> Result<u128, String> {
    row.get(primary_key)
        .and_then(Json::as_str)
        .and_then(|s| uuid::Uuid::parse_str(s).ok())
        .map(|u| u.as_u128())
        .ok_or_else(|| format!("a row without a GUID `{primary_key}`"))
}

/// A key as the GUID text the upstream uses (lowercase, hyphenated).
pub fn key_text(key: u128) -> String {
    uuid::Uuid::from_u128(key).hyphenated().to_string()
}

fn fold16(h: u64) -> u16 {
    (h ^ (h >> 16) ^ (h >> 32) ^ (h >> 48)) as u16
}

/// FNV-1a, 64 bits: small, fast and the same in every process.
pub struct Fnv(pub u64);

impl Fnv {
    pub fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    pub fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn write_value(&mut self, v: &Json) {
        // Writing to a hasher cannot fail.
        let _ = serde_json::to_writer(&mut *self, v);
    }
}

impl Default for Fnv {
    fn default() -> Self {
        Fnv::new()
    }
}

impl std::io::Write for Fnv {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Fnv::write(self, buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(id: &str, status: i64, name: &str) -> crate::odata::Record {
        let Json::Object(m) = json!({"id": id, "status": status, "name": name}) else {
            unreachable!()
        };
        crate::odata::UpstreamRecord::new(m)
    }

    const A: &str = "00000000-0000-0000-0000-00000000000a";
    const B: &str = "00000000-0000-0000-0000-00000000000b";

    fn snapshot() -> Snapshot {
        Snapshot::new("id".into(), vec!["id".into(), "status".into(), "name".into()])
    }

    #[test]
    fn first_read_creates_then_nothing_changes() {
        let mut s = snapshot();
        let rows = vec![row(A, 1, "x"), row(B, 2, "y")];
        let first = s.apply(&rows).unwrap();
        assert_eq!(
            first.iter().map(|c| c.kind).collect::<Vec<_>>(),
            [ChangeKind::Created; 2]
        );
        assert!(s.apply(&rows).unwrap().is_empty());
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn updates_name_the_changed_fields_and_deletions_are_reported() {
        let mut s = snapshot();
        s.apply(&[row(A, 1, "x"), row(B, 2, "y")]).unwrap();
        let changes = s.apply(&[row(A, 3, "x")]).unwrap();
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[0].kind, ChangeKind::Updated);
        assert_eq!(changes[0].changed, vec![1]);
        assert_eq!(key_text(changes[0].key), A);
        assert_eq!(changes[1].kind, ChangeKind::Deleted);
        assert_eq!(key_text(changes[1].key), B);
        assert!(changes[1].row.is_none());
    }

    #[test]
    fn hashes_are_stable_and_content_sensitive() {
        let (mut s1, mut s2) = (snapshot(), snapshot());
        let a = s1.apply(&[row(A, 1, "x")]).unwrap();
        let b = s2.apply(&[row(A, 1, "x")]).unwrap();
        assert_eq!(a[0].hash, b[0].hash);
        let c = s2.apply(&[row(A, 1, "z")]).unwrap();
        assert_ne!(a[0].hash, c[0].hash);
        assert_eq!(c[0].changed, vec![2]);
    }

    #[test]
    fn a_row_without_a_guid_key_is_an_error() {
        let mut s = snapshot();
        assert!(s.apply(&[row("nope", 1, "x")]).is_err());
    }
}
