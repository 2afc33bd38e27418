//! `POST $batch`: runs GET parts and change sets. A change set is one SQLite transaction, all or
//! nothing; `$n` Content-ID references resolve to records created earlier in the same change set;
//! without `Prefer: odata.continue-on-error` processing stops at the first failure. With
//! `Service::change_sets` off, a batch holding a change set is refused whole (501) before any
//! part runs, as a service without change-set support answers.

use super::error::ODataError;
use super::service::{self, ODataRequest, ODataResponse, Service, SERVICE_ROOT};
use super::write::ContentIds;
use crate::batch::{self, BatchRequestItem, BatchResponseItem, HttpRequestPart, HttpResponsePart};

pub(super) fn execute(svc: &Service, req: &ODataRequest, base: &str) -> ODataResponse {
    if req.method != "POST" {
        return ODataResponse::error(&ODataError::new(405, "", "$batch accepts POST only."));
    }
    let items = match req
        .header("Content-Type")
        .ok_or_else(|| batch::BatchError {
            message: "A $batch request needs a multipart/mixed Content-Type with a boundary.".into(),
        })
        .and_then(batch::boundary_from_content_type)
        .and_then(|b| batch::read_batch_request(&b, &req.body))
    {
        Ok(items) => items,
        Err(e) => {
            return ODataResponse::error(&ODataError::bad_query(format!(
                "The $batch request body is malformed: {}",
                e.message
            )))
        }
    };
    if let Some(refusal) = refuse_change_sets(svc, &items) {
        return refusal;
    }
    let continue_on_error = req.preferences().iter().any(|p| p == "odata.continue-on-error");
    let mut out = Vec::new();
    for item in items {
        match item {
            BatchRequestItem::Request(part) => {
                let resp = run_single(svc, &part, base, req);
                let failed = resp.status >= 400;
                out.push(BatchResponseItem::Response(to_part(resp, part.content_id.clone())));
                if failed && !continue_on_error {
                    return finish(out, true);
                }
            }
            BatchRequestItem::ChangeSet(parts) => match run_change_set(svc, &parts, base, req) {
                Ok(responses) => {
                    svc.writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    out.push(BatchResponseItem::ChangeSet(responses))
                }
                Err(failed) => {
                    out.push(BatchResponseItem::Response(failed));
                    if !continue_on_error {
                        return finish(out, true);
                    }
                }
            },
        }
    }
    finish(out, false)
}

/// With change sets off, a batch holding one is answered 501 with an OData error and nothing in
/// it runs; `None` lets the batch run.
fn refuse_change_sets(svc: &Service, items: &[BatchRequestItem]) -> Option<ODataResponse> {
    let has_change_set = items.iter().any(|i| matches!(i, BatchRequestItem::ChangeSet(_)));
    (!svc.change_sets && has_change_set).then(|| {
        ODataResponse::error(&ODataError::new(
            501,
            "",
            "Change sets are not supported by this service: send each write as its own request.",
        ))
    })
}

/// Without continue-on-error the batch takes the failing part's status and carries only it.
fn finish(mut out: Vec<BatchResponseItem>, stopped: bool) -> ODataResponse {
    let status = if stopped {
        let last = out.pop().expect("a failed part");
        let status = match &last {
            BatchResponseItem::Response(p) => p.status,
            BatchResponseItem::ChangeSet(_) => 400,
        };
        out = vec![last];
        status
    } else {
        200
    };
    let (content_type, body) = batch::write_batch_response(&out);
    ODataResponse {
        status,
        headers: vec![
            ("Content-Type".into(), content_type),
            ("OData-Version".into(), "4.0".into()),
        ],
        body,
    }
}

fn to_part(resp: ODataResponse, content_id: Option<String>) -> HttpResponsePart {
    HttpResponsePart {
        content_id,
        status: resp.status,
        reason: reason(resp.status).to_string(),
        headers: resp.headers,
        body: resp.body,
    }
}

fn reason(status: u16) -> &'static str {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("")
}

/// Turns a part's URL (absolute, absolute-path, relative or `$n[/…]`) into a service-relative
/// request.
fn inner_request(part: &HttpRequestPart, outer: &ODataRequest, refs: &ContentIds) -> Result<ODataRequest, ODataError> {
    let mut url = part.url.trim().to_string();
    if let Some(rest) = url.strip_prefix('$') {
        let (id, tail) = rest.split_once('/').map(|(a, b)| (a, Some(b))).unwrap_or((rest, None));
        let key = format!("${id}");
        let (entity, guid) = refs.get(&key).ok_or_else(|| {
            ODataError::bad_query(format!(
                "Content-ID Reference: '{key}' does not exist in the batch context."
            ))
        })?;
        url = format!(
            "{}({guid}){}",
            entity.entity_set,
            tail.map(|t| format!("/{t}")).unwrap_or_default()
        );
    }
    let after_root = match url.find(SERVICE_ROOT) {
        Some(i) => url[i + SERVICE_ROOT.len()..].to_string(),
        None if url.starts_with("http://") || url.starts_with("https://") || url.starts_with('/') => {
            return Err(ODataError::bad_query(format!(
                "The batch part URL '{url}' is not under the service root {SERVICE_ROOT}."
            )))
        }
        None => url,
    };
    let (path, query) = after_root
        .split_once('?')
        .map(|(p, q)| (p.to_string(), q.to_string()))
        .unwrap_or((after_root, String::new()));
    let mut headers = part.headers.clone();
    // Batch-level preferences (annotations, page size) apply to the parts unless they set their own.
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("prefer")) {
        headers.extend(
            outer
                .headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case("prefer"))
                .cloned(),
        );
    }
    Ok(ODataRequest {
        method: part.method.to_ascii_uppercase(),
        path: percent_encoding::percent_decode_str(&path)
            .decode_utf8_lossy()
            .into_owned(),
        query,
        headers,
        body: part.body.clone(),
    })
}

fn run_single(svc: &Service, part: &HttpRequestPart, base: &str, outer: &ODataRequest) -> ODataResponse {
    let inner = match inner_request(part, outer, &ContentIds::new()) {
        Ok(r) => r,
        Err(e) => return ODataResponse::error(&e),
    };
    match service::parse_target(&inner.path) {
        Ok(service::Target::Batch) => ODataResponse::error(&ODataError::bad_query("Batches cannot be nested.")),
        Ok(_) => svc.handle(&inner, base),
        Err(e) => ODataResponse::error(&e),
    }
}

/// Runs a change set in one transaction; on failure returns the failing part's response (the
/// transaction is rolled back, so none of the change set remains). With
/// `Service::atomic_change_sets` off, each part is its own transaction: the parts before the
/// failing one stay written.
fn run_change_set(
    svc: &Service,
    parts: &[HttpRequestPart],
    base: &str,
    outer: &ODataRequest,
) -> Result<Vec<HttpResponsePart>, HttpResponsePart> {
    let mut failed: Option<HttpResponsePart> = None;
    let mut refs = ContentIds::new();
    let mut responses = Vec::new();
    let mut run_part = |c: &rusqlite::Connection, part: &HttpRequestPart| -> Result<(), ODataError> {
        let step = inner_request(part, outer, &refs).and_then(|inner| {
            let spelled = svc.spell(&inner)?;
            let inner = &spelled.request;
            let target = service::parse_target(&inner.path)?;
            if matches!(target, service::Target::Batch) {
                return Err(ODataError::bad_query("Batches cannot be nested."));
            }
            if inner.method == "GET" {
                return Err(ODataError::bad_query(
                    "GET requests are not allowed inside a change set.",
                ));
            }
            let (resp, created) = service::write_request(c, &target, inner, base, &refs)?;
            Ok((svc.unspell(&spelled, resp), created))
        });
        match step {
            Ok((resp, created)) => {
                if let (Some(id), Some(rec)) = (&part.content_id, created) {
                    refs.insert(format!("${id}"), rec);
                }
                responses.push(to_part(resp, part.content_id.clone()));
                Ok(())
            }
            Err(e) => {
                failed = Some(to_part(ODataResponse::error(&e), part.content_id.clone()));
                Err(e)
            }
        }
    };
    let result = if svc.atomic_change_sets {
        svc.store
            .transaction(|c| parts.iter().try_for_each(|part| run_part(c, part)))
    } else {
        parts
            .iter()
            .try_for_each(|part| svc.store.transaction(|c| run_part(c, part)))
    };
    match result {
        Ok(()) => Ok(responses),
        Err(e) => Err(failed.unwrap_or_else(|| to_part(ODataResponse::error(&e), None))),
    }
}
