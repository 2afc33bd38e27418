//! The decisions `server::start` takes once, from the upstream, before serving: the dialect
//! (`--upstream-dialect auto`), the paging (`--upstream-paging auto`), the `$metadata` reconciliation and the `$expand` pushdown plan
//! (`--expand-pushdown auto`); and how `/readyz` reports the last two.

use crate::graphql::context::{DialectSource, ExpandPushdown, MetadataStatus, PushdownPlan, ReadConfig};
use crate::model::{model, Cardinality};
use crate::odata::{ODataQuery, Upstream, UpstreamErrorKind};

/// Decides the dialect by probe when configured `auto` (see [`super::probe_dialect`]).
pub async fn decide_dialect(upstream: &Upstream, acts_only_for_callers: bool, read: &mut ReadConfig) {
    if read.dialect_source == DialectSource::Auto {
        let probe = || super::probe_dialect(upstream);
        let dataverse = (crate::odata::Dialect::Dataverse, "dataverse");
        (read.dialect, read.dialect_source) = probe_or_assume("dialect", dataverse, acts_only_for_callers, probe).await;
    }
    tracing::info!(
        dialect = read.dialect.name(),
        decided = read.dialect_source.name(),
        "upstream dialect"
    );
}

/// Decides `--upstream-paging auto` once, before serving (see [`super::probe_paging`]).
pub async fn decide_paging(upstream: &Upstream, acts_only_for_callers: bool, read: &mut ReadConfig) {
    if read.paging_source == DialectSource::Auto {
        let probe = || super::probe_paging(upstream);
        let maxpagesize = (crate::odata::calls::Paging::Maxpagesize, "maxpagesize");
        (read.paging, read.paging_source) = probe_or_assume("paging", maxpagesize, acts_only_for_callers, probe).await;
    }
    tracing::info!(
        paging = read.paging.name(),
        decided = read.paging_source.name(),
        "upstream paging"
    );
}

/// An `auto` setting's value, from one probe; `assumed` (a value and its name) with a warning when
/// the probe is inconclusive, or not run because the gateway has no token of its own to probe with.
async fn probe_or_assume<T, F>(
    what: &str,
    (assumed, assumed_name): (T, &str),
    acts_only_for_callers: bool,
    probe: impl FnOnce() -> F,
) -> (T, DialectSource)
where
    F: std::future::Future<Output = Result<T, String>>,
{
    // Acting only for callers, the gateway has no token of its own to probe with.
    let probed = match acts_only_for_callers {
        true => Err("no token of the gateway's own to probe with".to_string()),
        false => probe().await,
    };
    match probed {
        Ok(value) => (value, DialectSource::Probed),
        Err(why) => {
            tracing::warn!(
                error = %why,
                "upstream {what}: the probe was inconclusive; assuming {assumed_name} (not probed again)"
            );
            (assumed, DialectSource::Assumed { why })
        }
    }
}

/// Reads the upstream's `$metadata` once and, when it can, sets the upstream client's naming
/// from it. A failed read leaves the model as it is, with a warning.
pub async fn reconcile_metadata(upstream: &Upstream, acts_only_for_callers: bool) -> MetadataStatus {
    if acts_only_for_callers {
        let why = "no token of the gateway's own to read it with".to_string();
        tracing::info!(reason = %why, "upstream $metadata not read; the model is used as it is");
        return MetadataStatus::NotRead { why };
    }
    match crate::odata::metadata::read_and_reconcile(upstream).await {
        Ok(r) => {
            tracing::info!(exact = r.is_exact(), differences = %r.summary(), "upstream $metadata held against the model");
            for line in r.lines() {
                tracing::info!(difference = %line, "upstream $metadata");
            }
            upstream.set_naming(r.naming.clone());
            MetadataStatus::Reconciled(r)
        }
        Err(why) => {
            tracing::warn!(error = %why, "upstream $metadata could not be read; the model is used as it is");
            MetadataStatus::Failed { why }
        }
    }
}

/// The pushdown plan for `mode`: with `auto`, to-one relations once the metadata was read (only
/// through navigation properties it has), to-many ones if one probe collection `$expand` works.
pub async fn decide_pushdown(upstream: &Upstream, mode: ExpandPushdown, metadata: &MetadataStatus) -> PushdownPlan {
    let plan = match (mode, metadata) {
        (ExpandPushdown::Auto, MetadataStatus::Reconciled(_)) => {
            let (to_many, why) = match probe_collection_expand(upstream).await {
                Ok(()) => (true, "auto: a collection $expand works upstream".to_string()),
                Err(why) => (false, format!("auto: to-many relations load separately ({why})")),
            };
            PushdownPlan {
                to_one: true,
                to_many,
                why,
            }
        }
        (ExpandPushdown::Auto, _) => PushdownPlan {
            to_one: false,
            to_many: false,
            why: "auto: off, the upstream's $metadata was not read".into(),
        },
        (mode, _) => PushdownPlan::configured(mode),
    };
    tracing::info!(to_one = plan.to_one, to_many = plan.to_many, why = %plan.why, "$expand pushdown");
    plan
}

/// One `$top=1` read with a collection `$expand` through a navigation property the upstream has.
async fn probe_collection_expand(upstream: &Upstream) -> Result<(), String> {
    let naming = upstream.naming();
    let (entity, relation) = model()
        .entities
        .iter()
        .flat_map(|e| e.graphql.relations.iter().map(move |r| (e, r)))
        .find(|(e, r)| r.kind == Cardinality::Many && naming.has_navigation(e, &r.navigation_property))
        .ok_or("no collection navigation property upstream")?;
    let target = model().by_logical_name(&relation.target).ok_or("no relation target")?;
    let mut q = ODataQuery::new(entity);
    q.select = vec![entity.primary_key.clone()];
    q.top = Some(1);
    q.expand = vec![crate::odata::Expand {
        navigation: relation.navigation_property.clone(),
        select: vec![target.primary_key.clone()],
        ..Default::default()
    }];
    match upstream.get_json_once(&q.to_relative_url(), None).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind == UpstreamErrorKind::BadRequest => {
            Err("the probe collection $expand was refused (400)".into())
        }
        Err(e) => Err(format!("the probe collection $expand was inconclusive: {e}")),
    }
}

/// `/readyz`'s `metadata` member; a failed read adds a warning.
pub fn metadata_report(status: &MetadataStatus, warnings: &mut Vec<String>) -> serde_json::Value {
    match status {
        MetadataStatus::NotRead { why } => serde_json::json!({ "status": "not read", "why": why }),
        MetadataStatus::Failed { why } => {
            warnings.push(format!(
                "upstream $metadata: not read at start, the model is used as it is: {why}"
            ));
            serde_json::json!({ "status": "failed", "why": why })
        }
        MetadataStatus::Reconciled(r) => serde_json::json!({
            "status": if r.is_exact() { "matches the model" } else { "reconciled" },
            "summary": r.summary(),
            "differences": r.lines(),
            "detail": r.to_json(),
        }),
    }
}

/// `/readyz`'s `expandPushdown` member.
pub fn pushdown_report(read: &ReadConfig) -> serde_json::Value {
    serde_json::json!({
        "mode": read.expand_pushdown.name(),
        "toOne": read.pushdown.to_one,
        "toMany": read.pushdown.to_many,
        "why": read.pushdown.why,
    })
}

#[cfg(test)]
mod tests {
    use crate::cli::{parse_args, Command};
    use crate::graphql::context::ExpandPushdown;

    fn serve(args: &[&str]) -> ExpandPushdown {
        let mut argv = vec!["ats-gateway"];
        argv.extend(args);
        match parse_args(argv.into_iter().map(Into::into).collect()).unwrap().command {
            Some(Command::Serve(s)) => s.expand_pushdown,
            _ => panic!("serve"),
        }
    }

    #[test]
    fn expand_pushdown_is_auto_by_default_and_takes_on_off_true_false() {
        std::env::remove_var("ATS_GATEWAY_EXPAND_PUSHDOWN");
        assert_eq!(serve(&[]), ExpandPushdown::Auto);
        assert_eq!(serve(&["--expand-pushdown", "on"]), ExpandPushdown::On);
        assert_eq!(serve(&["--expand-pushdown", "true"]), ExpandPushdown::On);
        assert_eq!(serve(&["--expand-pushdown", "false"]), ExpandPushdown::Off);
        assert!(parse_args(["ats-gateway", "--expand-pushdown", "maybe"].map(Into::into).to_vec()).is_err());
    }

    #[test]
    fn the_emulators_spelling_flags_repeat() {
        let argv = [
            "ats-gateway",
            "emulator",
            "--property-spelling",
            "mshr_dirpartycontactentity.mshr_ismobilephone=mshr_ismobile",
            "--omit-property",
            "mshr_dirpartycontactentity.mshr_description",
            "--omit-property",
            "mshr_dirpartycontactentity.mshr_locatorextension",
            "--extra-property",
            "mshr_dirpartycontactentities.cr_x",
            "--metadata-fails",
        ];
        let Some(Command::Emulator(e)) = parse_args(argv.map(Into::into).to_vec()).unwrap().command else {
            panic!("emulator");
        };
        let spelling = e.config().spelling;
        assert_eq!(spelling.omit_properties.len(), 2);
        assert!(spelling.metadata_fails);
        let naming = spelling.naming().unwrap();
        assert_eq!(naming.entities()["mshr_dirpartycontactentity"].extra.len(), 1);
    }
}
