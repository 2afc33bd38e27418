//! The checks, one function each, and [`CHECKS`], the list `doctor` runs in order. Adding a check
//! is one function returning an [`Outcome`] and one line in [`CHECKS`].
//!
//! Every URL is built by [`crate::odata::ODataQuery`] (names from the model, values escaped by
//! `odata::escape`). Doctor's upstream client has no retries of failures (only a 429's wait and
//! a token refresh after a 401 remain), so an answer is the service's own, not a retry's.

use super::{Doctor, Pushdown};
use crate::cli::{UpstreamDialect, UpstreamPaging};
use crate::model::{model, Cardinality, Entity, Relation};
use crate::odata::{Dialect, Expand, ODataQuery, OptionSetLabels, UpstreamError, UpstreamErrorKind};
use futures::future::BoxFuture;

/// What a check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pass,
    Fail,
    /// The check could not tell (no data to try, an answer that says neither yes nor no).
    Unknown,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Unknown => "unknown",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: Status,
    pub detail: String,
    /// On a failure, the setting to use instead (`--upstream-dialect odata4`, ...), if one helps.
    pub fix: Option<String>,
    /// Whether the gateway cannot work against the service with the settings given.
    pub blocking: bool,
}

impl Outcome {
    pub fn pass(detail: impl Into<String>) -> Self {
        Outcome {
            status: Status::Pass,
            detail: detail.into(),
            fix: None,
            blocking: false,
        }
    }

    /// A failure that the settings given do not depend on: it blocks (nothing avoids it).
    pub fn fail(detail: impl Into<String>) -> Self {
        Outcome {
            status: Status::Fail,
            detail: detail.into(),
            fix: None,
            blocking: true,
        }
    }

    pub fn unknown(detail: impl Into<String>) -> Self {
        Outcome {
            status: Status::Unknown,
            detail: detail.into(),
            fix: None,
            blocking: false,
        }
    }

    /// The setting that avoids this failure.
    pub fn fix(mut self, setting: &str) -> Self {
        self.fix = Some(setting.to_string());
        self
    }

    /// Whether it blocks the gateway as configured.
    pub fn blocking(mut self, blocking: bool) -> Self {
        self.blocking = blocking;
        self
    }
}

/// A check: its name in the report, the function, and whether the checks after it need it to
/// pass (they are `unknown` without running otherwise).
pub struct Check {
    pub name: &'static str,
    pub run: CheckFn,
    pub prerequisite: bool,
}

/// A check's function.
pub type CheckFn = for<'a> fn(&'a Doctor) -> BoxFuture<'a, Outcome>;

impl Check {
    /// A check the others do not depend on.
    pub const fn new(name: &'static str, run: CheckFn) -> Check {
        Check {
            name,
            run,
            prerequisite: false,
        }
    }

    /// A check the ones after it need to pass.
    pub const fn prerequisite(name: &'static str, run: CheckFn) -> Check {
        Check {
            name,
            run,
            prerequisite: true,
        }
    }
}

/// The checks, in the order they run and are reported.
pub const CHECKS: &[Check] = &[
    Check::prerequisite("reachability", reachability),
    Check::new("metadata", metadata),
    Check::new("option-sets", option_sets),
    Check::new("paging", paging),
    Check::new("in-function", in_function),
    Check::new("collection-expand", collection_expand),
    Check::new("batch", batch),
    Check::new("change-sets", super::change_sets::change_sets),
];

/// The entity of a GraphQL type of the model.
pub(super) fn entity(graphql_type: &str) -> &'static Entity {
    model()
        .by_graphql_type(graphql_type)
        .unwrap_or_else(|| panic!("the model has the type {graphql_type}"))
}

/// A to-many relation of `entity` by its GraphQL field.
fn to_many(entity: &'static Entity, field: &str) -> &'static Relation {
    entity
        .graphql
        .relations
        .iter()
        .find(|r| r.field == field && r.kind == Cardinality::Many)
        .unwrap_or_else(|| panic!("{} has the to-many relation {field}", entity.entity_set))
}

/// Whether an error says the service could not be asked (no answer, credentials, throttling,
/// outage) rather than answering the question.
fn inconclusive(e: &UpstreamError) -> bool {
    e.status.is_none()
        || e.is_retryable()
        || matches!(e.kind, UpstreamErrorKind::Unauthorized | UpstreamErrorKind::Forbidden)
}

/// `unknown` for an error that did not answer the question.
fn could_not_ask(e: &UpstreamError) -> Outcome {
    Outcome::unknown(format!("could not ask: {} ({})", e.message, e.code()))
}

/// Token acquisition through the configured auth, then one GET of the service document.
pub fn reachability(d: &Doctor) -> BoxFuture<'_, Outcome> {
    Box::pin(async move {
        let auth = d.settings.auth_mode;
        if let Err(e) = d.upstream.tokens().credential(d.auth()).await {
            return Outcome::fail(format!("no token through {auth}: {} ({})", e.message, e.code()));
        }
        match d.upstream.get_json_once("", d.auth()).await {
            Ok(doc) => Outcome::pass(format!("service document read (auth {auth}); {}", listed_sets(&doc))),
            Err(e) if d.settings.caller_tokens_only && !d.has_caller() && e.kind == UpstreamErrorKind::Unauthorized => {
                Outcome::unknown(format!(
                    "the service answers (HTTP 401), but {auth} calls with a caller's token: give doctor one (ATS_GATEWAY_DOCTOR_CALLER_TOKEN) to check the rest"
                ))
            }
            Err(e) => match e.kind {
                UpstreamErrorKind::Unauthorized | UpstreamErrorKind::Forbidden => Outcome::fail(format!(
                    "credentials refused (auth {auth}): {} ({})",
                    e.message,
                    e.code()
                )),
                _ => Outcome::fail(format!("unreachable: {} ({})", e.message, e.code())),
            },
        }
    })
}

/// How many of the model's entity sets a service document lists.
fn listed_sets(doc: &serde_json::Value) -> String {
    let listed: Vec<&str> = doc
        .get("value")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .filter_map(|s| s.get("url").or(s.get("name")).and_then(|n| n.as_str()))
        .collect();
    let entities = &model().entities;
    let found = entities
        .iter()
        .filter(|e| listed.contains(&e.entity_set.as_str()))
        .count();
    format!("{found} of the model's {} entity sets listed", entities.len())
}

/// Reads `$metadata` as the gateway does at start and holds the model against it: renamed and
/// extra properties are mapped (pass); missing properties or navigation properties are not
/// fatal, but their fields resolve to null and their relations load separately (fail, never
/// blocking).
pub fn metadata(d: &Doctor) -> BoxFuture<'_, Outcome> {
    Box::pin(async move {
        // Acting only for its callers, the gateway has no token of its own to read `$metadata`
        // with at start: it uses the model as it is, so any difference is not mapped.
        let unmapped = d.settings.caller_tokens_only;
        if unmapped && !d.has_caller() {
            return Outcome::unknown(
                "the gateway acts only for its callers and does not read $metadata: the model is used as it is (give doctor a caller token to compare)",
            );
        }
        let r = match crate::odata::metadata::read_and_reconcile_as(&d.upstream, d.auth()).await {
            Ok(r) => r,
            Err(why) => {
                return Outcome::fail(format!(
                    "$metadata could not be read ({why}): the gateway starts with the model as it is, and --expand-pushdown auto stays off"
                ))
                .blocking(false)
            }
        };
        if r.is_exact() {
            return Outcome::pass(
                "every model property and navigation property is there, spelled as the model spells it",
            );
        }
        let lossy = r
            .naming
            .entities()
            .values()
            .any(|n| !n.missing.is_empty() || !n.missing_navigations.is_empty())
            || !r.missing_entities.is_empty();
        let lines = r.lines();
        let shown: Vec<&str> = lines.iter().take(3).map(String::as_str).collect();
        let detail = format!(
            "{}{}: {}",
            r.summary(),
            if lines.len() > shown.len() {
                format!(" (first {} of {})", shown.len(), lines.len())
            } else {
                String::new()
            },
            shown.join("; ")
        );
        if unmapped {
            Outcome::fail(format!(
                "{detail}; acting only for its callers, the gateway does not read $metadata at start, so these are not mapped"
            ))
            .blocking(false)
        } else if lossy {
            Outcome::fail(detail).blocking(false)
        } else {
            Outcome::pass(detail)
        }
    })
}

/// Reads the option-set definitions as the gateway does at start, and says how the labels map.
pub fn option_sets(d: &Doctor) -> BoxFuture<'_, Outcome> {
    Box::pin(async move {
        let labels = OptionSetLabels::load(&d.upstream, d.auth()).await;
        judge_labels(&labels)
    })
}

/// The option-set verdict: all matched (pass), labels missing upstream (fail: those values keep
/// their documented integers), or definitions not readable (unknown: the environment's integers
/// may differ from the documented ones). Never blocking: the gateway starts with the fall-back.
pub(super) fn judge_labels(labels: &OptionSetLabels) -> Outcome {
    let sets = &model().option_sets;
    let (unmatched, unreadable): (Vec<&String>, Vec<&String>) =
        labels.fallbacks().iter().partition(|f| f.contains("no upstream label"));
    let renumbered: usize = sets
        .iter()
        .map(|s| {
            s.values
                .iter()
                .filter(|v| labels.to_upstream(&s.name, v.value) != v.value)
                .count()
        })
        .sum();
    if !unmatched.is_empty() {
        return Outcome::fail(format!(
            "{} option sets have labels the service lacks, whose values keep their documented integers: {}",
            unmatched.len(),
            first_of(&unmatched)
        ))
        .blocking(false);
    }
    if !unreadable.is_empty() {
        return Outcome::unknown(format!(
            "{} of {} definitions not readable, so their documented integers are used and may not be this environment's: {}",
            unreadable.len(),
            sets.len(),
            first_of(&unreadable)
        ));
    }
    Outcome::pass(format!(
        "{} option sets read, every label matched; {renumbered} values have an integer other than the documented one (mapped by label)",
        sets.len()
    ))
}

/// The first item of a list, and how many more.
fn first_of(items: &[&String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.to_string(),
        [first, rest @ ..] => format!("{first} (and {} more)", rest.len()),
    }
}

/// The page size the paging check asks for.
pub const PROBE_PAGE_SIZE: usize = 2;
/// Pages the paging check reads at most.
const PROBE_PAGES: usize = 3;

/// Whether `Prefer: odata.maxpagesize` is honoured, and whether `@odata.nextLink`, followed
/// unchanged with the same preference, gives further, distinct rows.
pub fn paging(d: &Doctor) -> BoxFuture<'_, Outcome> {
    Box::pin(async move {
        let entity = entity("RecruitingRequest");
        let mut q = ODataQuery::new(entity);
        q.select = vec![entity.primary_key.clone()];
        q.orderby = vec![(entity.primary_key.clone(), false)];
        let (first, applied) = match d.get_page_preferring(&q.to_relative_url(), PROBE_PAGE_SIZE).await {
            Ok(page) => page,
            Err(e) if inconclusive(&e) => return could_not_ask(&e),
            Err(e) => return Outcome::fail(format!("the first page was refused: {} ({})", e.message, e.code())),
        };
        let applied_note = match &applied {
            Some(a) => format!("Preference-Applied: {a}"),
            None => "no Preference-Applied header".to_string(),
        };
        let paging = d.settings.paging;
        if first.value.len() > PROBE_PAGE_SIZE && paging == UpstreamPaging::Top {
            return Outcome::pass(format!(
                "odata.maxpagesize={PROBE_PAGE_SIZE} ignored ({} rows, {applied_note}), as --upstream-paging top expects: lists page by $top",
                first.value.len()
            ));
        }
        if first.value.len() > PROBE_PAGE_SIZE {
            return Outcome::fail(format!(
                "odata.maxpagesize={PROBE_PAGE_SIZE} ignored: the first page had {} rows ({applied_note}); lists must page by $top{}",
                first.value.len(),
                match paging {
                    UpstreamPaging::Auto => " (auto picks top)",
                    _ => "",
                }
            ))
            .fix("--upstream-paging top")
            .blocking(paging == UpstreamPaging::Maxpagesize);
        }
        let Some(next) = first.next_link.clone() else {
            return Outcome::unknown(format!(
                "{} has only {} rows, too few to show paging ({applied_note})",
                entity.entity_set,
                first.value.len()
            ));
        };
        let followed = follow_links(d, entity, first.value, next, &applied_note).await;
        if followed.status == Status::Pass && paging == UpstreamPaging::Top {
            // Forced `top` pages by `$skip`, which Dataverse does not have.
            return Outcome::fail(format!(
                "{}; but --upstream-paging top reads next pages with $skip, which Dataverse does not support",
                followed.detail
            ))
            .fix("--upstream-paging auto")
            .blocking(false);
        }
        followed
    })
}

/// Follows `next` unchanged, with the same page size, for up to [`PROBE_PAGES`] pages in all,
/// and checks that every row is new.
async fn follow_links(
    d: &Doctor,
    entity: &'static Entity,
    first_rows: Vec<crate::odata::Record>,
    next: String,
    applied_note: &str,
) -> Outcome {
    let key = |row: &crate::odata::Record| row.get(&entity.primary_key).map(|v| v.to_string());
    let mut seen: Vec<Option<String>> = first_rows.iter().map(key).collect();
    let mut link = Some(next);
    let mut pages = 1;
    while let (Some(l), true) = (link.take(), pages < PROBE_PAGES) {
        let page = match d.get_page_preferring(&l, PROBE_PAGE_SIZE).await {
            Ok((page, _)) => page,
            Err(e) if inconclusive(&e) => return could_not_ask(&e),
            Err(e) => {
                return Outcome::fail(format!(
                    "following @odata.nextLink unchanged failed on page {}: {} ({})",
                    pages + 1,
                    e.message,
                    e.code()
                ))
            }
        };
        pages += 1;
        for row in &page.value {
            let k = key(row);
            if k.is_none() || seen.contains(&k) {
                return Outcome::fail(format!(
                    "@odata.nextLink page {pages} repeated a row of an earlier page, so cursors would skip or repeat rows"
                ));
            }
            seen.push(k);
        }
        link = page.next_link;
    }
    Outcome::pass(format!(
        "pages of {PROBE_PAGE_SIZE} ({applied_note}); @odata.nextLink followed unchanged for {pages} pages, {} distinct rows",
        seen.len()
    ))
}

/// The `Microsoft.Dynamics.CRM.In` function, with the gateway's own start-up probe.
pub fn in_function(d: &Doctor) -> BoxFuture<'_, Outcome> {
    Box::pin(async move {
        let configured = d.settings.dialect;
        match crate::server::probe_dialect_as(&d.upstream, d.auth()).await {
            Ok(Dialect::Dataverse) => Outcome::pass(match configured {
                UpstreamDialect::Odata4 => {
                    "Microsoft.Dynamics.CRM.In accepted (odata4 as configured works too; dataverse needs fewer requests)"
                }
                _ => "Microsoft.Dynamics.CRM.In accepted: the dataverse dialect works",
            }),
            Ok(Dialect::Odata4) => Outcome::fail(format!(
                "Microsoft.Dynamics.CRM.In refused with 400: joins must be or-chains of eq{}",
                match configured {
                    UpstreamDialect::Auto => " (auto picks odata4)",
                    _ => "",
                }
            ))
            .fix("--upstream-dialect odata4")
            .blocking(configured == UpstreamDialect::Dataverse),
            Err(why) => Outcome::unknown(format!("the probe was inconclusive: {why}")),
        }
    })
}

/// A collection `$expand`: one recruiting request with its positions.
pub fn collection_expand(d: &Doctor) -> BoxFuture<'_, Outcome> {
    Box::pin(async move {
        let parent = entity("RecruitingRequest");
        let relation = to_many(parent, "positions");
        let child = model()
            .by_logical_name(&relation.target)
            .expect("the relation's target is in the model");
        let mut q = ODataQuery::new(parent);
        q.select = vec![parent.primary_key.clone()];
        q.top = Some(1);
        q.expand = vec![Expand {
            navigation: relation.navigation_property.clone(),
            select: vec![child.primary_key.clone()],
            ..Expand::default()
        }];
        let refused = |detail: String| {
            Outcome::fail(detail)
                .fix("--expand-pushdown off")
                .blocking(d.settings.pushdown == Pushdown::On)
        };
        let doc = match d.upstream.get_json_once(&q.to_relative_url(), d.auth()).await {
            Ok(doc) => doc,
            Err(e) if inconclusive(&e) => return could_not_ask(&e),
            Err(e) => return refused(format!("refused: {} ({})", e.message, e.code())),
        };
        let Some(row) = doc.get("value").and_then(|v| v.get(0)) else {
            return Outcome::unknown(format!("{} is empty: nothing to expand", parent.entity_set));
        };
        match row.get(&relation.navigation_property).and_then(|v| v.as_array()) {
            Some(children) => Outcome::pass(format!(
                "a recruiting request read with its {} positions in one request ({})",
                children.len(),
                relation.navigation_property
            )),
            None => refused(format!(
                "accepted, but the row came back without {}",
                relation.navigation_property
            )),
        }
    })
}

/// `$batch` with one GET part. Every submission validates with a `$batch` of reads, so a service
/// without `$batch` blocks whatever the settings.
pub fn batch(d: &Doctor) -> BoxFuture<'_, Outcome> {
    Box::pin(async move {
        let entity = entity("RecruitingRequest");
        let mut q = ODataQuery::new(entity);
        q.select = vec![entity.primary_key.clone()];
        q.top = Some(1);
        let part = d.upstream.batch_get_part(&q.to_relative_url(), None);
        let items = vec![crate::batch::BatchRequestItem::Request(part)];
        let answer = match d.upstream.batch(items, d.auth(), false).await {
            Ok(answer) => answer,
            Err(e) if inconclusive(&e) => return could_not_ask(&e),
            Err(e) => return Outcome::fail(format!("$batch refused: {} ({})", e.message, e.code())),
        };
        match answer.first() {
            Some(crate::batch::BatchResponseItem::Response(part)) => match crate::odata::part_page(part) {
                Ok(page) => Outcome::pass(format!("one GET part answered ({} row)", page.value.len())),
                Err(e) => Outcome::fail(format!("the GET part failed: {} ({})", e.message, e.code())),
            },
            _ => Outcome::fail("the $batch answer did not hold the GET part's response"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_names_are_unique_and_reachability_comes_first() {
        let mut names: Vec<&str> = CHECKS.iter().map(|c| c.name).collect();
        assert_eq!(names[0], "reachability");
        assert!(CHECKS[0].prerequisite);
        names.sort();
        names.dedup();
        assert_eq!(names.len(), CHECKS.len());
    }

    #[test]
    fn the_entities_and_relation_the_checks_use_are_in_the_model() {
        let rr = entity("RecruitingRequest");
        assert!(to_many(rr, "positions").navigation_property.starts_with("mshr_"));
        entity("Person");
    }

    #[test]
    fn labels_verdicts() {
        let documented = OptionSetLabels::documented();
        let o = judge_labels(&documented);
        assert_eq!(o.status, Status::Pass, "{o:?}");
        assert!(o.detail.contains("0 values have an integer other"), "{o:?}");
        let unreadable = OptionSetLabels::build(model().option_sets.iter().map(|s| (s, Err("HTTP 404".to_string()))));
        let o = judge_labels(&unreadable);
        assert_eq!(o.status, Status::Unknown, "{o:?}");
        assert!(o.detail.contains("HTTP 404") && o.detail.contains("more"), "{o:?}");
        assert!(!o.blocking);
        let set = &model().option_sets[0];
        let unmatched = OptionSetLabels::build([(set, Ok(serde_json::json!({"Options": []})))]);
        let o = judge_labels(&unmatched);
        assert_eq!(o.status, Status::Fail, "{o:?}");
        assert!(!o.blocking, "the gateway falls back to the documented integers");
    }

    #[test]
    fn errors_that_do_not_answer_are_inconclusive() {
        let refused = UpstreamError::from_status(400, None, b"");
        assert!(!inconclusive(&refused));
        for status in [401, 403, 429, 503] {
            assert!(inconclusive(&UpstreamError::from_status(status, None, b"")), "{status}");
        }
        let not_sent = UpstreamError::not_sent(UpstreamErrorKind::Timeout, "no answer");
        assert!(inconclusive(&not_sent));
    }
}
