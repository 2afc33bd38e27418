//! Reads and writes on [`Upstream`]: a page, every page of a query, any JSON document, the
//! readiness probe, and POST/PATCH/DELETE. Each is one `Upstream::send` (retries, deadline,
//! credentials, slots) and the parsing of its answer by [`super::response`].

use super::client::{first_segment, Upstream, MAX_PAGE_SIZE};
use super::error::{UpstreamError, UpstreamErrorKind};
use super::query::ODataQuery;
use super::resilience::RetryPolicy;
use super::response::{self, Page, WriteResult};
use reqwest::Method;
use serde_json::Value;
use std::collections::HashSet;

const JSON: &str = "application/json; charset=utf-8";

impl Upstream {
    /// One page of a collection (or a single record, as a one-row page). `page_size` sends
    /// `Prefer: odata.maxpagesize`.
    pub async fn get_page(
        &self,
        url_or_relative: &str,
        auth: Option<&str>,
        page_size: Option<usize>,
    ) -> Result<Page, UpstreamError> {
        let url = self.spelled_url(&self.absolute_url(url_or_relative)?)?;
        let extra: Vec<(&str, String)> = page_size
            .map(|n| ("prefer", format!("odata.maxpagesize={}", n.clamp(1, MAX_PAGE_SIZE))))
            .into_iter()
            .collect();
        let raw = self
            .send(Method::GET, &url, auth, &extra, None, RetryPolicy::Idempotent)
            .await?;
        if !(200..300).contains(&raw.status) {
            return Err(raw.error());
        }
        let mut page = response::parse_page(raw.status, &raw.body)?;
        self.rows_to_model(&url, page.value.iter_mut());
        Ok(page)
    }

    /// Every row of a query, following `@odata.nextLink` unchanged with the same page size.
    ///
    /// Never truncates silently: when more than `limit` rows match, the result is an error of
    /// kind `TooManyRows`. The page size is at most `limit + 1`, so that case costs one small
    /// page. With `q.top` set, no page size is sent (Dataverse would ignore `$top`, contract §2)
    /// and rows past `top` are dropped, as asked. `count` is the first page's `@odata.count`.
    pub async fn get_all(&self, q: &ODataQuery, auth: Option<&str>, limit: usize) -> Result<Page, UpstreamError> {
        let page_size = match q.top {
            Some(_) => None,
            None => Some(
                self.config()
                    .max_page_size
                    .min(limit.saturating_add(1))
                    .clamp(1, MAX_PAGE_SIZE),
            ),
        };
        let wanted = q.top.unwrap_or(usize::MAX);
        let max_pages = 1000 + limit / page_size.unwrap_or(MAX_PAGE_SIZE);
        let mut link = q.to_relative_url();
        let mut seen = HashSet::new();
        let mut rows = Vec::new();
        let mut count = None;
        for page_no in 0.. {
            let page = self.get_page(&link, auth, page_size).await?;
            if page_no == 0 {
                count = page.count;
            }
            rows.extend(page.value);
            if rows.len() >= wanted {
                rows.truncate(wanted);
                break;
            }
            if rows.len() > limit {
                return Err(UpstreamError::new(
                    UpstreamErrorKind::TooManyRows,
                    None,
                    format!(
                        "more than {limit} rows of {} match; refusing to return a partial result (narrow the filter)",
                        q.entity.entity_set
                    ),
                ));
            }
            match page.next_link {
                None => break,
                Some(next) => {
                    if !seen.insert(next.clone()) || page_no >= max_pages {
                        return Err(UpstreamError::new(
                            UpstreamErrorKind::InvalidResponse,
                            None,
                            "upstream paging does not end (a next link repeats or pages never run out)",
                        ));
                    }
                    link = next;
                }
            }
        }
        Ok(Page {
            value: rows,
            next_link: None,
            count,
        })
    }

    /// Any JSON document (`$metadata`-like reads, option-set definitions, a property value).
    /// A 204 is `Value::Null`; a UTF-8 BOM (as on `/$count`) is skipped.
    pub async fn get_json(&self, relative: &str, auth: Option<&str>) -> Result<Value, UpstreamError> {
        self.get_json_with(relative, auth, RetryPolicy::Idempotent).await
    }

    /// One GET of the service document, never retried: does the upstream answer now? Through
    /// the breaker like any call, so that it can be an open breaker's probe.
    pub async fn probe(&self) -> Result<Value, UpstreamError> {
        self.get_json_with("", None, RetryPolicy::Never).await
    }

    /// [`Upstream::get_json`] sent once, never retried (one upstream request).
    pub async fn get_json_once(&self, relative: &str, auth: Option<&str>) -> Result<Value, UpstreamError> {
        self.get_json_with(relative, auth, RetryPolicy::Never).await
    }

    async fn get_json_with(
        &self,
        relative: &str,
        auth: Option<&str>,
        policy: RetryPolicy,
    ) -> Result<Value, UpstreamError> {
        let url = self.spelled_url(&self.absolute_url(relative)?)?;
        let raw = self.send(Method::GET, &url, auth, &[], None, policy).await?;
        if !(200..300).contains(&raw.status) {
            return Err(raw.error());
        }
        response::parse_json(raw.status, &raw.body)
    }

    /// POST, PATCH or DELETE (`body` `Null` sends none). A PATCH carries `If-Match: *` so it
    /// can never create a record by upsert (contract §4; meaningless for virtual tables, §0): a
    /// missing record is a `NotFound`. `entity_id` comes from `OData-EntityId`, or from the
    /// returned body's primary key with `prefer_representation`. Never retried.
    pub async fn send_write(
        &self,
        method: Method,
        relative_url: &str,
        body: &Value,
        auth: Option<&str>,
        prefer_representation: bool,
    ) -> Result<WriteResult, UpstreamError> {
        self.send_write_with(
            method,
            relative_url,
            body,
            auth,
            prefer_representation,
            RetryPolicy::Never,
        )
        .await
    }

    /// [`Upstream::send_write`] with a retry policy: [`RetryPolicy::UnlessProcessed`] for a write
    /// an idempotency key protects.
    pub async fn send_write_with(
        &self,
        method: Method,
        relative_url: &str,
        body: &Value,
        auth: Option<&str>,
        prefer_representation: bool,
        policy: RetryPolicy,
    ) -> Result<WriteResult, UpstreamError> {
        let url = self.spelled_url(&self.absolute_url(relative_url)?)?;
        let body = &self.spelled_body(&url, body)?;
        let mut extra = Vec::new();
        if prefer_representation {
            extra.push(("prefer", "return=representation".to_string()));
        }
        if method == Method::PATCH {
            extra.push(("if-match", "*".to_string()));
        }
        let payload = (!body.is_null()).then(|| {
            (
                JSON.to_string(),
                serde_json::to_vec(body).expect("a JSON value serializes"),
            )
        });
        let raw = self.send(method, &url, auth, &extra, payload, policy).await?;
        if !(200..300).contains(&raw.status) {
            return Err(raw.error());
        }
        let set = first_segment(&self.config().service_root, &url);
        let mut result = response::write_result(raw.status, raw.header("odata-entityid"), &raw.body, &set)?;
        if let Some(Value::Object(row)) = result.body.as_mut() {
            self.rows_to_model(&url, std::iter::once(row));
        }
        Ok(result)
    }
}
