//! The change-set check: does the service take change sets, and does it roll back a failed one?
//!
//! Doctor sends one change set that must fail: a harmless create (a person whose last name is a
//! marker unique to this run) followed by a PATCH of a person that does not exist. Then it looks
//! for the marker, whatever the answer was, and deletes what it finds, so that nothing is left
//! behind. The verdict:
//!
//! - **atomic**: the PATCH failed and the create is gone (Dataverse's documented behaviour);
//! - **not atomic (the gateway compensates)**: the create survived; doctor deleted it. The gateway
//!   checks for and deletes what a failed change set kept, so this passes;
//! - **refused**: the service does not take change sets (400, 405 or 501 for the whole batch,
//!   although a `$batch` of reads works): `--submission-strategy flat`, which blocks the batch and
//!   deep-insert strategies (deep insert uses a change set for an existing person).

use super::checks::{entity, Outcome};
use super::Doctor;
use crate::batch::{BatchRequestItem, BatchResponseItem};
use crate::graphql::mutations::write::Strategy;
use crate::model::Entity;
use crate::odata::{escape, Method, ODataQuery, UpstreamError};
use futures::future::BoxFuture;
use serde_json::json;

/// The key of a person that does not exist (what the PATCH addresses).
const MISSING: &str = "00000000-0000-0000-0000-000000000000";
/// The first name of doctor's own records.
const FIRST_NAME: &str = "ats-gateway doctor";

/// What the service did with the change set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// It ran the parts and failed at the PATCH of the missing record (404).
    FailedAtPatch,
    /// It does not take change sets; the service's reason.
    Refused(String),
    /// Every part succeeded: the PATCH of a missing record did not fail (an upsert?).
    Succeeded,
    /// Anything else: no answer, credentials, an outage, another part failing; why.
    Other(String),
}

/// What the look for doctor's records found, and what became of them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Leftovers {
    pub found: usize,
    pub deleted: usize,
    /// Why the look or a delete failed.
    pub problem: Option<String>,
}

/// The check (see the module docs).
pub fn change_sets(d: &Doctor) -> BoxFuture<'_, Outcome> {
    Box::pin(async move {
        let person = entity("Person");
        let marker = format!("doctor-{}", uuid::Uuid::new_v4().simple());
        let items = vec![BatchRequestItem::ChangeSet(parts(d, person, &marker))];
        let answer = classify(&d.upstream.batch(items, d.auth(), false).await);
        let leftovers = clean_up(d, person, &marker).await;
        verdict(&answer, &leftovers, d.settings.strategy, &marker)
    })
}

/// The create and the PATCH that must fail.
fn parts(d: &Doctor, person: &'static Entity, marker: &str) -> Vec<crate::batch::HttpRequestPart> {
    let create = json!({ "mshr_firstname": FIRST_NAME, "mshr_lastname": marker });
    let missing = ODataQuery::by_key(person, MISSING)
        .expect("a GUID key")
        .to_relative_url();
    vec![
        d.upstream
            .batch_write_part(&Method::POST, &person.entity_set, &create, Some("1".into())),
        d.upstream.batch_write_part(
            &Method::PATCH,
            &missing,
            &json!({ "mshr_firstname": FIRST_NAME }),
            Some("2".into()),
        ),
    ]
}

/// Reads the service's answer to the change set.
pub fn classify(sent: &Result<Vec<BatchResponseItem>, UpstreamError>) -> Answer {
    let refusal = |status: u16| matches!(status, 400 | 405 | 501);
    let items = match sent {
        Ok(items) => items,
        Err(e) => {
            return match e.status {
                Some(s) if refusal(s) => Answer::Refused(format!("HTTP {s}: {}", e.message)),
                _ => Answer::Other(format!("{} ({})", e.message, e.code())),
            }
        }
    };
    let parts = items.iter().flat_map(|i| match i {
        BatchResponseItem::Response(p) => std::slice::from_ref(p),
        BatchResponseItem::ChangeSet(ps) => ps.as_slice(),
    });
    let Some(failed) = parts.into_iter().find(|p| p.status >= 400) else {
        return Answer::Succeeded;
    };
    let error = UpstreamError::from_status(failed.status, None, &failed.body);
    match (failed.status, failed.content_id.as_deref()) {
        (404, Some("2") | None) => Answer::FailedAtPatch,
        (s, None) if refusal(s) => Answer::Refused(format!("HTTP {s}: {}", error.message)),
        (405 | 501, _) => Answer::Refused(format!("HTTP {}: {}", failed.status, error.message)),
        (s, id) => Answer::Other(format!(
            "part {} failed with HTTP {s}: {}",
            id.unwrap_or("?"),
            error.message
        )),
    }
}

/// Finds doctor's records by their marker and deletes them.
async fn clean_up(d: &Doctor, person: &'static Entity, marker: &str) -> Leftovers {
    let mut q = ODataQuery::new(person);
    q.select = vec![person.primary_key.clone()];
    q.filter = Some(format!("mshr_lastname eq {}", escape::string_literal(marker)));
    // Doctor's records are a handful: one page (of 100, or whole where the page size is ignored).
    let rows = match d.upstream.get_page(&q.to_relative_url(), d.auth(), Some(100)).await {
        Ok(page) => page.value,
        Err(e) => {
            return Leftovers {
                problem: Some(format!("could not look for them: {}", e.message)),
                ..Leftovers::default()
            }
        }
    };
    let mut out = Leftovers {
        found: rows.len(),
        ..Leftovers::default()
    };
    for row in rows {
        let id = row
            .get(&person.primary_key)
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        let deleted = match ODataQuery::by_key(person, id) {
            Ok(key) => d
                .upstream
                .send_write(
                    Method::DELETE,
                    &key.to_relative_url(),
                    &serde_json::Value::Null,
                    d.auth(),
                    false,
                )
                .await
                .map_err(|e| e.message),
            Err(e) => Err(e.reason),
        };
        match deleted {
            Ok(_) => out.deleted += 1,
            Err(why) => out.problem = Some(format!("could not delete {id}: {why}")),
        }
    }
    out
}

/// The line for what the service did and what doctor cleaned up.
pub fn verdict(answer: &Answer, leftovers: &Leftovers, strategy: Strategy, marker: &str) -> Outcome {
    let outcome = match answer {
        Answer::FailedAtPatch if leftovers.found == 0 && leftovers.problem.is_none() => {
            Outcome::pass("atomic: a change set failing in its second part left nothing")
        }
        Answer::FailedAtPatch if leftovers.found > 0 => Outcome::pass(format!(
            "not atomic (the gateway compensates): the create before the failing part was kept ({} record)",
            leftovers.found
        )),
        Answer::FailedAtPatch => {
            Outcome::unknown("the change set failed as it should, but doctor could not look for what it kept")
        }
        Answer::Refused(why) => Outcome::fail(format!("refused: the service does not take change sets ({why})"))
            .fix("--submission-strategy flat")
            .blocking(strategy != Strategy::Flat),
        Answer::Succeeded => Outcome::unknown("the change set did not fail: a PATCH of a missing record succeeded"),
        Answer::Other(why) => Outcome::unknown(format!("no verdict: {why}")),
    };
    with_cleanup_note(outcome, leftovers, marker)
}

/// Adds what doctor deleted, or what it may have left behind, to the detail.
fn with_cleanup_note(mut outcome: Outcome, leftovers: &Leftovers, marker: &str) -> Outcome {
    if leftovers.deleted > 0 {
        outcome
            .detail
            .push_str(&format!("; doctor deleted its {} test record(s)", leftovers.deleted));
    }
    if let Some(problem) = &leftovers.problem {
        outcome.detail.push_str(&format!(
            "; {problem}: delete any person whose last name is {marker} by hand"
        ));
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::HttpResponsePart;
    use crate::doctor::Status;

    fn part(status: u16, id: Option<&str>) -> BatchResponseItem {
        BatchResponseItem::Response(HttpResponsePart {
            content_id: id.map(str::to_owned),
            status,
            reason: String::new(),
            headers: Vec::new(),
            body: br#"{"error":{"code":"","message":"nope"}}"#.to_vec(),
        })
    }

    #[test]
    fn answers_are_classified() {
        assert_eq!(classify(&Ok(vec![part(404, Some("2"))])), Answer::FailedAtPatch);
        assert_eq!(classify(&Ok(vec![part(404, None)])), Answer::FailedAtPatch);
        assert_eq!(
            classify(&Ok(vec![BatchResponseItem::ChangeSet(vec![])])),
            Answer::Succeeded
        );
        assert!(matches!(classify(&Ok(vec![part(501, None)])), Answer::Refused(_)));
        assert!(matches!(classify(&Ok(vec![part(400, Some("1"))])), Answer::Other(_)));
        let whole = UpstreamError::from_status(501, None, br#"{"error":{"code":"","message":"no"}}"#);
        assert_eq!(classify(&Err(whole)), Answer::Refused("HTTP 501: no".into()));
        let throttled = UpstreamError::from_status(429, None, b"");
        assert!(matches!(classify(&Err(throttled)), Answer::Other(_)));
    }

    #[test]
    fn verdicts() {
        let none = Leftovers::default();
        let o = verdict(&Answer::FailedAtPatch, &none, Strategy::Batch, "m");
        assert_eq!((o.status, o.blocking), (Status::Pass, false));
        assert!(o.detail.starts_with("atomic"), "{o:?}");
        let kept = Leftovers {
            found: 1,
            deleted: 1,
            problem: None,
        };
        let o = verdict(&Answer::FailedAtPatch, &kept, Strategy::Batch, "m");
        assert_eq!(o.status, Status::Pass);
        assert!(o.detail.contains("not atomic (the gateway compensates)"), "{o:?}");
        assert!(o.detail.contains("doctor deleted its 1 test record"), "{o:?}");
        let refused = Answer::Refused("HTTP 501: no".into());
        for (strategy, blocking) in [
            (Strategy::Batch, true),
            (Strategy::DeepInsert, true),
            (Strategy::Flat, false),
        ] {
            let o = verdict(&refused, &none, strategy, "m");
            assert_eq!(o.status, Status::Fail);
            assert_eq!(o.fix.as_deref(), Some("--submission-strategy flat"));
            assert_eq!(o.blocking, blocking, "{strategy:?}");
        }
        let stuck = Leftovers {
            found: 1,
            deleted: 0,
            problem: Some("could not delete x: 403".into()),
        };
        let o = verdict(&Answer::FailedAtPatch, &stuck, Strategy::Batch, "doctor-1");
        assert!(o.detail.contains("by hand") && o.detail.contains("doctor-1"), "{o:?}");
    }
}
