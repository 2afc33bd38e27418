//! `$batch` on [`Upstream`]: sending a batch and building its parts with the same headers as
//! top-level calls (contract §5). Reading the parts back is [`super::response`]'s job.

use super::client::{Upstream, MAX_PAGE_SIZE};
use super::error::{UpstreamError, UpstreamErrorKind};
use super::resilience::RetryPolicy;
use crate::batch::{self, BatchRequestItem, BatchResponseItem, HttpRequestPart};
use reqwest::Method;
use serde_json::Value;

impl Upstream {
    /// Sends a `$batch`. A multipart answer is returned item by item, whatever the envelope's
    /// status: without `continue_on_error` Dataverse stops at the first failure and answers with
    /// that failure's status and only the failed part (contract §5), which the caller reads like
    /// any other part (see [`super::response::part_result`]). A non-multipart error is an `Err`.
    ///
    /// A batch of GETs is a read and is retried like one; a batch with writes is never retried
    /// (see [`Upstream::batch_with`]).
    pub async fn batch(
        &self,
        items: Vec<BatchRequestItem>,
        auth: Option<&str>,
        continue_on_error: bool,
    ) -> Result<Vec<BatchResponseItem>, UpstreamError> {
        let reads_only = items
            .iter()
            .all(|i| matches!(i, BatchRequestItem::Request(p) if p.method.eq_ignore_ascii_case("GET")));
        let policy = if reads_only {
            RetryPolicy::Idempotent
        } else {
            RetryPolicy::Never
        };
        self.batch_with(items, auth, continue_on_error, policy).await
    }

    /// [`Upstream::batch`] with a retry policy: [`RetryPolicy::UnlessProcessed`] for a change set
    /// an idempotency key protects (a change set is all or nothing, so a refused one wrote
    /// nothing).
    pub async fn batch_with(
        &self,
        items: Vec<BatchRequestItem>,
        auth: Option<&str>,
        continue_on_error: bool,
        policy: RetryPolicy,
    ) -> Result<Vec<BatchResponseItem>, UpstreamError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let (items, entities) = self.spelled_batch(items)?;
        for item in &items {
            let parts = match item {
                BatchRequestItem::Request(p) => std::slice::from_ref(p),
                BatchRequestItem::ChangeSet(ps) => ps.as_slice(),
            };
            // `$n` references have no entity set of their own; absolute paths get the origin.
            for p in parts.iter().filter(|p| !p.url.starts_with('$')) {
                match p.url.starts_with('/') {
                    true => self.count(&format!("{}{}", self.root.origin().ascii_serialization(), p.url)),
                    false => self.count(&p.url),
                }
            }
        }
        let (content_type, body) = batch::write_batch_request(&items);
        let url = self.absolute_url("$batch")?;
        let mut extra = Vec::new();
        if continue_on_error {
            extra.push(("prefer", "odata.continue-on-error".to_string()));
        }
        let raw = self
            .send(Method::POST, &url, auth, &extra, Some((content_type, body)), policy)
            .await?;
        let multipart = raw
            .header("content-type")
            .and_then(|ct| batch::boundary_from_content_type(ct).ok());
        match multipart {
            Some(boundary) => {
                let mut parts = batch::read_batch_response(&boundary, &raw.body).map_err(|e| {
                    UpstreamError::new(
                        UpstreamErrorKind::InvalidResponse,
                        Some(raw.status),
                        format!("upstream $batch response is not valid multipart: {}", e.message),
                    )
                })?;
                self.batch_rows_to_model(&entities, &mut parts);
                Ok(parts)
            }
            None if (200..300).contains(&raw.status) => Err(UpstreamError::invalid_response(
                Some(raw.status),
                "to $batch is not multipart/mixed",
                &raw.body,
            )),
            None => Err(raw.error()),
        }
    }

    /// A GET for a `$batch`, with the headers a top-level GET carries.
    pub fn batch_get_part(&self, relative: &str, page_size: Option<usize>) -> HttpRequestPart {
        let mut headers = vec![
            ("Accept".to_string(), "application/json".to_string()),
            ("If-None-Match".to_string(), "null".to_string()),
        ];
        if let Some(n) = page_size {
            headers.push((
                "Prefer".into(),
                format!("odata.maxpagesize={}", n.clamp(1, MAX_PAGE_SIZE)),
            ));
        }
        HttpRequestPart {
            content_id: None,
            method: "GET".into(),
            url: self.part_url(relative),
            headers,
            body: Vec::new(),
        }
    }

    /// A write for a `$batch` change set; `relative` may also be a `$n` Content-ID reference.
    /// `body` `Null` sends none; a PATCH carries `If-Match: *` like [`Upstream::send_write`].
    pub fn batch_write_part(
        &self,
        method: &Method,
        relative: &str,
        body: &Value,
        content_id: Option<String>,
    ) -> HttpRequestPart {
        let url = if relative.starts_with('$') && relative[1..].starts_with(|c: char| c.is_ascii_digit()) {
            relative.to_string()
        } else {
            self.part_url(relative)
        };
        let mut headers = vec![("Accept".to_string(), "application/json".to_string())];
        if *method == Method::PATCH {
            // As in `send_write`: an update must never create a record by upsert.
            headers.push(("If-Match".into(), "*".into()));
        }
        let body = if body.is_null() {
            Vec::new()
        } else {
            headers.push(("Content-Type".into(), "application/json; type=entry".into()));
            serde_json::to_vec(body).expect("a JSON value serializes")
        };
        HttpRequestPart {
            content_id,
            method: method.as_str().to_string(),
            url,
            headers,
            body,
        }
    }

    /// A part's URL: absolute (Dataverse accepts that form, §5), a given absolute URL unchanged.
    fn part_url(&self, relative: &str) -> String {
        if relative.starts_with("http://") || relative.starts_with("https://") {
            relative.to_string()
        } else {
            format!("{}{}", self.config().service_root, relative.trim_start_matches('/'))
        }
    }
}
