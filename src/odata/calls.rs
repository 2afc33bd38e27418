//! Reads and writes on [`Upstream`]: a page, any JSON document, the readiness and paging probes,
//! and POST/PATCH/DELETE. Each is one `Upstream::send` (retries, deadline, credentials, slots)
//! and the parsing of its answer by [`super::response`].
//!
//! Paging ([`Paging`], [`collect_all`]): an upstream that honours `Prefer: odata.maxpagesize`
//! (Dataverse, contract §3) is read by `@odata.nextLink`, unchanged, with the same page size. One
//! that ignores the preference would answer a page size of 3 with every row, so it is read with
//! `$top` instead (one more row than wanted, to know whether more follow), continued with `$skip`
//! (plain OData v4; Dataverse has no `$skip`, but honours the preference) or with the service's
//! own `nextLink`s when it pages by itself.

use super::client::{first_segment, Upstream, MAX_PAGE_SIZE};
use super::error::{UpstreamError, UpstreamErrorKind};
use super::resilience::RetryPolicy;
use super::response::{self, Page, WriteResult};
use reqwest::Method;
use serde_json::Value;
use std::collections::HashSet;

/// How the gateway limits the rows of an upstream read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Paging {
    /// `Prefer: odata.maxpagesize` and the upstream's `@odata.nextLink`s (Dataverse).
    #[default]
    Maxpagesize,
    /// `$top` (one row more than wanted), then `$skip` or the upstream's own `nextLink`s, for a
    /// service that ignores `odata.maxpagesize`.
    Top,
}

impl Paging {
    pub fn name(self) -> &'static str {
        match self {
            Paging::Maxpagesize => "maxpagesize",
            Paging::Top => "top",
        }
    }

    /// The request for the first `n` rows of the query `url` (built by the gateway): the link to
    /// get and the `odata.maxpagesize` to send with it.
    pub fn first_rows(self, url: &str, n: usize) -> (String, Option<usize>) {
        match self {
            Paging::Maxpagesize => (url.to_string(), Some(n.clamp(1, MAX_PAGE_SIZE))),
            Paging::Top => (with_top_skip(url, n, 0), None),
        }
    }
}

/// `link` (a query the gateway built, never an upstream `nextLink`) with `$top` and, when not 0,
/// `$skip` added. Both are numbers, so nothing needs escaping.
pub fn with_top_skip(link: &str, top: usize, skip: usize) -> String {
    let sep = if link.contains('?') { '&' } else { '?' };
    match skip {
        0 => format!("{link}{sep}$top={top}"),
        n => format!("{link}{sep}$top={top}&$skip={n}"),
    }
}

/// What [`probe_paging`](Upstream::probe_paging) saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PagingProbe {
    /// `Preference-Applied` named `odata.maxpagesize`.
    pub applied: bool,
    /// Rows that came back for a page size of 1.
    pub rows: usize,
}

impl PagingProbe {
    /// The paging to use: the preference is honoured when the upstream says so, or when no more
    /// than the one row asked for came back.
    pub fn paging(self) -> Paging {
        match self.applied || self.rows <= 1 {
            true => Paging::Maxpagesize,
            false => Paging::Top,
        }
    }
}

/// Reads every row of the query `url` (built by the gateway: no `$top`, `$skip` or
/// `$skiptoken`) with `fetch` (a link and the `odata.maxpagesize` to send, `None` for none),
/// paging as `paging` says, and refusing, with `TooManyRows`, more than `limit` rows rather than
/// truncating them silently. A page holds at most `limit + 1` rows (at most [`MAX_PAGE_SIZE`]),
/// and reading stops at the first page past the limit, so a refusal never reads much more than
/// the limit. A next link that repeats, or more pages than rows, is an upstream whose paging
/// does not end (`InvalidResponse`).
pub async fn collect_all<F, Fut>(
    url: &str,
    paging: Paging,
    limit: usize,
    entity_set: &str,
    mut fetch: F,
) -> Result<Vec<super::Record>, UpstreamError>
where
    F: FnMut(String, Option<usize>) -> Fut,
    Fut: std::future::Future<Output = Result<Page, UpstreamError>>,
{
    let chunk = limit.saturating_add(1).clamp(1, MAX_PAGE_SIZE);
    let mut chain = Chain {
        rows: Vec::new(),
        seen: HashSet::new(),
        limit,
        entity_set,
    };
    let mut skip = 0;
    loop {
        let (link, size) = match paging {
            Paging::Maxpagesize => (url.to_string(), Some(chunk)),
            Paging::Top => (with_top_skip(url, chunk, skip), None),
        };
        let got = chain.follow(link, size, &mut fetch).await?;
        if paging == Paging::Maxpagesize || got < chunk {
            return Ok(chain.rows);
        }
        skip += chunk;
    }
}

/// The rows [`collect_all`] has read, and the links it followed (its loop guard).
struct Chain<'a> {
    rows: Vec<super::Record>,
    seen: HashSet<String>,
    limit: usize,
    entity_set: &'a str,
}

impl Chain<'_> {
    /// Reads `link` and the next links after it; returns how many rows they held.
    async fn follow<F, Fut>(&mut self, link: String, size: Option<usize>, fetch: &mut F) -> Result<usize, UpstreamError>
    where
        F: FnMut(String, Option<usize>) -> Fut,
        Fut: std::future::Future<Output = Result<Page, UpstreamError>>,
    {
        let mut got = 0;
        let mut next = Some(link);
        while let Some(link) = next.take() {
            // Every page but an empty last one holds a row, and reading stops past the limit.
            if !self.seen.insert(link.clone()) || self.seen.len() > self.limit.saturating_add(2) {
                return Err(UpstreamError::new(
                    UpstreamErrorKind::InvalidResponse,
                    None,
                    "upstream paging does not end (a next link repeats or pages never run out)",
                ));
            }
            let page = fetch(link, size).await?;
            got += page.value.len();
            // Shared with the caches that also hold the page: nothing is copied.
            self.rows.extend(page.value);
            if self.rows.len() > self.limit {
                return Err(UpstreamError::new(
                    UpstreamErrorKind::TooManyRows,
                    None,
                    format!(
                        "more than {} rows of {} match; refusing to return a partial result (narrow the filter)",
                        self.limit, self.entity_set
                    ),
                ));
            }
            next = page.next_link;
        }
        Ok(got)
    }
}

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
        let entity = self.entity_of(&url);
        // In the model's spelling already: read straight into records.
        if self.naming().is_identity() {
            if let Some(page) = response::read_page(&raw.body, entity) {
                return Ok(page);
            }
        }
        let mut json = response::parse_json(raw.status, &raw.body)?;
        self.rows_to_model(&url, response::rows_mut(&mut json));
        let mut page = response::page_of(raw.status, json, &raw.body)?;
        if let Some(entity) = entity {
            // Fresh rows, held once: `make_mut` copies nothing.
            for row in &mut page.value {
                std::sync::Arc::make_mut(row).take_expanded(entity);
            }
        }
        Ok(page)
    }

    /// Whether the upstream honours `Prefer: odata.maxpagesize`: one GET (never retried) of
    /// `relative` (a query on a set with at least 2 rows, with `$top=2`, which Dataverse ignores
    /// when a page size is sent) with a page size of 1.
    pub async fn probe_paging(&self, relative: &str) -> Result<PagingProbe, UpstreamError> {
        let url = self.absolute_url(relative)?;
        let extra = [("prefer", "odata.maxpagesize=1".to_string())];
        let raw = self
            .send(Method::GET, &url, None, &extra, None, RetryPolicy::Never)
            .await?;
        if !(200..300).contains(&raw.status) {
            return Err(raw.error());
        }
        let applied = raw
            .header("preference-applied")
            .is_some_and(|v| v.to_ascii_lowercase().contains("odata.maxpagesize"));
        let page = response::parse_page(raw.status, &raw.body)?;
        Ok(PagingProbe {
            applied,
            rows: page.value.len(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_and_skip_are_added_to_a_gateway_query() {
        assert_eq!(with_top_skip("s", 4, 0), "s?$top=4");
        assert_eq!(with_top_skip("s?$select=a", 4, 0), "s?$select=a&$top=4");
        assert_eq!(with_top_skip("s?$select=a", 4, 8), "s?$select=a&$top=4&$skip=8");
        assert_eq!(Paging::Top.first_rows("s", 1), ("s?$top=1".to_string(), None));
        assert_eq!(
            Paging::Maxpagesize.first_rows("s", 9000),
            ("s".to_string(), Some(MAX_PAGE_SIZE))
        );
    }

    #[test]
    fn the_probe_decides_by_preference_applied_or_by_rows() {
        let probe = |applied, rows| PagingProbe { applied, rows }.paging();
        assert_eq!(probe(true, 2), Paging::Maxpagesize);
        assert_eq!(probe(false, 1), Paging::Maxpagesize);
        assert_eq!(probe(false, 0), Paging::Maxpagesize);
        assert_eq!(probe(false, 2), Paging::Top);
    }

    fn rows(n: usize) -> Vec<crate::odata::Record> {
        (0..n)
            .map(|i| crate::odata::UpstreamRecord::new(serde_json::Map::from_iter([("i".to_string(), Value::from(i))])))
            .collect()
    }

    /// A service of `total` rows that honours `$top`/`$skip` and ignores the page size.
    fn by_top(total: usize, asked: &std::sync::Mutex<Vec<String>>, link: String) -> Result<Page, UpstreamError> {
        asked.lock().unwrap().push(link.clone());
        let option = |name: &str| {
            link.split(['?', '&'])
                .find_map(|kv| kv.strip_prefix(name))
                .map_or(0, |v| v.parse::<usize>().unwrap())
        };
        let (top, skip) = (option("$top="), option("$skip="));
        Ok(Page {
            value: rows(total.saturating_sub(skip).min(top)),
            next_link: None,
            count: None,
        })
    }

    #[tokio::test]
    async fn by_top_a_whole_set_comes_in_chunks_of_the_limit_and_one() {
        let asked = std::sync::Mutex::new(Vec::new());
        let fetch = |link: String, size: Option<usize>| {
            assert_eq!(size, None);
            std::future::ready(by_top(7, &asked, link))
        };
        assert_eq!(collect_all("s", Paging::Top, 100, "s", fetch).await.unwrap().len(), 7);
        assert_eq!(*asked.lock().unwrap(), vec!["s?$top=101"]);
        // Past the limit: refused after one chunk of limit + 1 rows, never more.
        asked.lock().unwrap().clear();
        let fetch = |link: String, _| std::future::ready(by_top(10_000, &asked, link));
        let e = collect_all("s", Paging::Top, 3, "s", fetch).await.unwrap_err();
        assert_eq!(e.kind, UpstreamErrorKind::TooManyRows);
        assert_eq!(*asked.lock().unwrap(), vec!["s?$top=4"]);
        // A limit above the largest page: chunks of 5000 continued with $skip.
        asked.lock().unwrap().clear();
        let fetch = |link: String, _| std::future::ready(by_top(7_000, &asked, link));
        assert_eq!(
            collect_all("s", Paging::Top, 9_000, "s", fetch).await.unwrap().len(),
            7_000
        );
        assert_eq!(*asked.lock().unwrap(), vec!["s?$top=5000", "s?$top=5000&$skip=5000"]);
    }

    #[tokio::test]
    async fn a_next_link_that_repeats_is_paging_that_does_not_end() {
        let fetch = |_: String, _| {
            std::future::ready(Ok(Page {
                value: rows(1),
                next_link: Some("s?again".into()),
                count: None,
            }))
        };
        let e = collect_all("s", Paging::Maxpagesize, 100, "s", fetch)
            .await
            .unwrap_err();
        assert!(e.message.contains("does not end"), "{}", e.message);
    }
}
