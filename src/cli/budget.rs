//! The upstream-budget flags of `serve` (see `crate::graphql::budget`): the short-lived read cache
//! per upstream identity and the per-operation upstream request limit.

use super::duration;
use crate::odata::read_cache::ReadCacheConfig;
use clap::Args;
use std::time::Duration;

#[derive(Debug, Args, Clone, Default)]
pub struct BudgetArgs {
    /// How long a page read upstream may be served again to the same upstream identity (the
    /// application under client credentials, each user under on-behalf-of), such as 5s. Off
    /// (0s) by default. A write through the gateway clears the entity sets it touches;
    /// `Cache-Control: no-cache` from a client bypasses the cache.
    #[arg(long, env = "ATS_GATEWAY_READ_CACHE_TTL", default_value = "0s", value_parser = duration)]
    pub read_cache_ttl: Duration,
    /// The read-cache time-to-live of one entity, as `<list field or entity set>=<duration>`,
    /// such as recruitingRequests=30s (0s: never cached); repeat the flag or separate with commas.
    #[arg(long, env = "ATS_GATEWAY_READ_CACHE_TTL_FOR", value_delimiter = ',', value_parser = ttl_for)]
    pub read_cache_ttl_for: Vec<(String, Duration)>,
    /// Most bytes the read cache holds (estimated JSON size of the pages).
    #[arg(long, env = "ATS_GATEWAY_READ_CACHE_MAX_BYTES", default_value_t = ReadCacheConfig::DEFAULT_MAX_BYTES)]
    pub read_cache_max_bytes: u64,
    /// Whether identical upstream reads in flight at the same time, as the same upstream
    /// identity, share one request. On by default; off only to measure what it saves.
    #[arg(long, env = "ATS_GATEWAY_READ_COALESCING", default_value_t = true, action = clap::ArgAction::Set)]
    pub read_coalescing: bool,
    /// Most upstream requests one query may be estimated to cost (a list's page, one request per
    /// relation and level, split by URL length and pages); a query over it is refused before it
    /// starts, with the estimate (TOO_MANY_UPSTREAM_REQUESTS). The upstream twin of --max-cost.
    #[arg(long, env = "ATS_GATEWAY_MAX_UPSTREAM_REQUESTS_PER_OPERATION", default_value_t = 50)]
    pub max_upstream_requests_per_operation: u64,
    /// The upstream budget per upstream identity, as <requests>/<window> such as 6000/5m
    /// (Dataverse's service-protection limit per user). A request over it waits for the window
    /// if that fits the operation's deadline, else fails unsent (UPSTREAM_BUDGET_EXHAUSTED);
    /// /readyz warns above 80%. With --redis-url all replicas share it (one Redis round trip per
    /// upstream request); without, it is this process's alone: with n replicas, give each 1/n.
    #[arg(long, env = "ATS_GATEWAY_UPSTREAM_RATE_LIMIT")]
    pub upstream_rate_limit: Option<crate::odata::rate_limit::RateLimit>,
}

/// Reads `recruitingRequests=30s` into the entity set and its time-to-live.
fn ttl_for(s: &str) -> Result<(String, Duration), String> {
    let (name, ttl) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not <list field or entity set>=<duration>, such as recruitingRequests=30s"))?;
    let set = crate::graphql::budget::entity_set_named(name.trim())
        .ok_or_else(|| format!("`{name}` is neither a list field (such as recruitingRequests) nor an entity set"))?;
    Ok((set.to_string(), duration(ttl.trim())?))
}

impl BudgetArgs {
    /// The read cache's settings.
    pub fn read_cache(&self) -> ReadCacheConfig {
        ReadCacheConfig {
            ttl: (!self.read_cache_ttl.is_zero()).then_some(self.read_cache_ttl),
            ttl_by_set: self.read_cache_ttl_for.iter().cloned().collect(),
            max_bytes: self.read_cache_max_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_entity_ttls_name_list_fields_or_entity_sets() {
        let (set, ttl) = ttl_for("recruitingRequests=30s").unwrap();
        assert_eq!(ttl, Duration::from_secs(30));
        assert_eq!(
            ttl_for(&format!("{set}=2s")).unwrap(),
            (set.clone(), Duration::from_secs(2))
        );
        assert!(ttl_for("recruitingRequests").is_err());
        assert!(ttl_for("nothing=2s").is_err());
        assert!(ttl_for("recruitingRequests=soon").is_err());
        let args = BudgetArgs {
            read_cache_ttl_for: vec![(set.clone(), Duration::from_secs(30))],
            ..Default::default()
        };
        let config = args.read_cache();
        assert_eq!(config.ttl, None, "off by default");
        assert_eq!(config.ttl_for(&set), Some(Duration::from_secs(30)));
    }
}
