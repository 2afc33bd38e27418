//! Parsed documents, kept by their query text: the applications that call a gateway send the
//! same few queries again and again, and parsing one (async-graphql's pest parser) was 3% of the
//! instructions of the canonical nested read; cloning a kept parse costs a small part of that.
//!
//! A parse depends on the text alone, never on the caller, so the cache is shared by all of
//! them. It is bounded in bytes of query text (a document's parse is a small multiple of its
//! text), and a text longer than the limits accept (`--max-query-chars`) is neither parsed nor
//! kept here: the limits refuse it before anything parses it. A text that does not parse is not
//! kept either; the schema parses it again and reports the error as it always does.

use async_graphql::parser::types::ExecutableDocument;
use moka::future::Cache;
use std::sync::Arc;

/// How many bytes of query text the cache holds.
const CACHE_BYTES: u64 = 8 * 1024 * 1024;

/// The document cache.
#[derive(Clone)]
pub struct Documents {
    cache: Cache<Arc<str>, Arc<ExecutableDocument>>,
    /// Texts longer than this many bytes are left to the limits (which count characters, never
    /// more than the bytes).
    max_bytes: usize,
}

impl Documents {
    /// A cache for texts of at most `max_document_chars` characters.
    pub fn new(max_document_chars: usize) -> Self {
        Documents {
            cache: Cache::builder()
                .max_capacity(CACHE_BYTES)
                // The text counts twice: once as the key, once (at least) in its parse.
                .weigher(|query: &Arc<str>, _: &Arc<ExecutableDocument>| {
                    u32::try_from(2 * query.len()).unwrap_or(u32::MAX)
                })
                .build(),
            max_bytes: max_document_chars,
        }
    }

    /// The parse of `query`, kept or made now; `None` when it is too long to parse here or does
    /// not parse (the schema's own parse then refuses it, with the error its clients know).
    pub async fn parsed(&self, query: &str) -> Option<ExecutableDocument> {
        if query.len() > self.max_bytes {
            return None;
        }
        if let Some(doc) = self.cache.get(query).await {
            return Some(ExecutableDocument::clone(&doc));
        }
        let doc = async_graphql::parser::parse_query(query).ok()?;
        self.cache.insert(Arc::from(query), Arc::new(doc.clone())).await;
        Some(doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_text_parses_once_and_is_served_from_the_cache_after() {
        let docs = Documents::new(1000);
        let q = "query Q { recruitingRequests(first: 2) { nodes { id } } }";
        let first = docs.parsed(q).await.expect("parses");
        docs.cache.run_pending_tasks().await;
        assert_eq!(docs.cache.entry_count(), 1);
        let again = docs.parsed(q).await.expect("kept");
        assert_eq!(format!("{first:?}"), format!("{again:?}"));
        assert_eq!(docs.cache.entry_count(), 1);
    }

    #[tokio::test]
    async fn broken_and_oversized_texts_are_left_to_the_schema_and_not_kept() {
        let docs = Documents::new(40);
        assert!(docs.parsed("{ recruitingRequests { ").await.is_none());
        assert!(docs.parsed(&format!("{{ {} }}", "a ".repeat(30))).await.is_none());
        docs.cache.run_pending_tasks().await;
        assert_eq!(docs.cache.entry_count(), 0);
    }
}
