//! Query building: [`ODataQuery`] turns a typed request into a relative URL
//! (`mshr_x?$select=a,b&$filter=...`), and [`children_of`] builds the "children of these
//! parents" queries that resolve to-many relations in as few requests as the URL budget allows.
//!
//! Property and navigation names come from the model (the GraphQL layer builds queries only from
//! its entities and relations), so they are not checked again here. Option
//! values are percent-encoded (`escape::percent_encode_query_value`); `$filter` text is expected
//! to come from [`super::filter::compile`], which has already escaped every literal in it.

use super::escape::{self, percent_encode_path_segment as enc_path, percent_encode_query_value as enc};
use super::filter::{self, Filter, FilterError, Literal};
use crate::model::Entity;
use std::fmt;

/// Default length budget of a relative query URL: half of the 32 KB Dataverse allows, which
/// leaves room for the service root and for proxies with smaller limits.
pub const DEFAULT_URL_BUDGET: usize = 16 * 1024;

/// Which `$filter` language the upstream speaks.
///
/// - `Dataverse`: OData v4 plus Dataverse's query functions; string joins use
///   `Microsoft.Dynamics.CRM.In(PropertyName=..,PropertyValues=[..])`.
/// - `Odata4`: plain OData v4 (an OData service, or a provider that refuses Dataverse's
///   functions); every `In` is written as an `or` chain of `eq`s, which is longer, so joins may
///   split into more requests by URL length.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Dialect {
    #[default]
    Dataverse,
    Odata4,
}

impl Dialect {
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Dataverse => "dataverse",
            Dialect::Odata4 => "odata4",
        }
    }
}

/// One query (or by-key read) on an entity set.
#[derive(Clone)]
pub struct ODataQuery {
    pub entity: &'static Entity,
    /// A record key (GUID) for a by-key read: `set(<key>)`.
    pub key: Option<String>,
    pub select: Vec<String>,
    /// `$filter` text, normally from [`filter::compile`].
    pub filter: Option<String>,
    /// `(property, descending)`.
    pub orderby: Vec<(String, bool)>,
    /// Note: Dataverse ignores `$top` when `odata.maxpagesize` is sent (contract §2): with
    /// `$top`, send no page size.
    pub top: Option<usize>,
    pub expand: Vec<Expand>,
    pub count: bool,
}

/// One `$expand` item: `navigation($select=...;$filter=...;$expand=...)`. Dataverse allows at
/// most [`crate::vocabulary::MAX_EXPANDS`] in a query, nested ones included; the gateway expands
/// only first-level relations, one per relation, and no entity has more relations than that (a
/// test in `odata::tests::query` holds the model to it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Expand {
    pub navigation: String,
    pub select: Vec<String>,
    pub filter: Option<String>,
    pub expand: Vec<Expand>,
}

impl fmt::Debug for ODataQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The entity is large; its set name identifies it.
        f.debug_struct("ODataQuery")
            .field("entity", &self.entity.entity_set)
            .field("key", &self.key)
            .field("select", &self.select)
            .field("filter", &self.filter)
            .field("orderby", &self.orderby)
            .field("top", &self.top)
            .field("expand", &self.expand)
            .field("count", &self.count)
            .finish()
    }
}

impl ODataQuery {
    /// A query on the whole entity set, with no options.
    pub fn new(entity: &'static Entity) -> Self {
        ODataQuery {
            entity,
            key: None,
            select: Vec::new(),
            filter: None,
            orderby: Vec::new(),
            top: None,
            expand: Vec::new(),
            count: false,
        }
    }

    /// A by-key read; the key must be a GUID (virtual tables have no alternate keys, contract §0).
    pub fn by_key(entity: &'static Entity, id: &str) -> Result<Self, FilterError> {
        let key = escape::guid(id).map_err(|reason| FilterError {
            path: "key".into(),
            property: Some(entity.primary_key.clone()),
            reason,
        })?;
        Ok(ODataQuery {
            key: Some(key),
            ..ODataQuery::new(entity)
        })
    }

    /// The URL relative to the service root, with every option value percent-encoded.
    pub fn to_relative_url(&self) -> String {
        let mut url = enc_path(&self.entity.entity_set);
        if let Some(key) = &self.key {
            url.push('(');
            url.push_str(&enc_path(key));
            url.push(')');
        }
        let mut options = Vec::new();
        if !self.select.is_empty() {
            options.push(format!("$select={}", list(&self.select)));
        }
        if let Some(f) = &self.filter {
            options.push(format!("$filter={}", enc(f)));
        }
        if !self.orderby.is_empty() {
            let items: Vec<String> = self
                .orderby
                .iter()
                .map(|(p, desc)| format!("{}{}", enc(p), if *desc { "%20desc" } else { "" }))
                .collect();
            options.push(format!("$orderby={}", items.join(",")));
        }
        if let Some(top) = self.top {
            options.push(format!("$top={top}"));
        }
        if !self.expand.is_empty() {
            options.push(format!("$expand={}", expand_list(&self.expand)));
        }
        if self.count {
            options.push("$count=true".into());
        }
        if !options.is_empty() {
            url.push('?');
            url.push_str(&options.join("&"));
        }
        url
    }
}

fn list(names: &[String]) -> String {
    names.iter().map(|n| enc(n)).collect::<Vec<_>>().join(",")
}

fn expand_list(items: &[Expand]) -> String {
    items.iter().map(expand_item).collect::<Vec<_>>().join(",")
}

/// `nav($select=a,b;$filter=...;$expand=...)`: the structural `( ; = )` stay raw, as in the
/// Dataverse examples; names and filter text are encoded like any option value.
fn expand_item(e: &Expand) -> String {
    let mut inner = Vec::new();
    if !e.select.is_empty() {
        inner.push(format!("$select={}", list(&e.select)));
    }
    if let Some(f) = &e.filter {
        inner.push(format!("$filter={}", enc(f)));
    }
    if !e.expand.is_empty() {
        inner.push(format!("$expand={}", expand_list(&e.expand)));
    }
    if inner.is_empty() {
        enc(&e.navigation)
    } else {
        format!("{}({})", enc(&e.navigation), inner.join(";"))
    }
}

fn bad(path: &str, property: Option<&str>, reason: String) -> FilterError {
    FilterError {
        path: path.into(),
        property: property.map(str::to_string),
        reason,
    }
}

fn check_names(entity: &Entity, names: &[String], path: &str) -> Result<(), FilterError> {
    for n in names {
        if entity.property(n).is_none() {
            let reason = format!("'{}' has no property named {n:?}", entity.entity_set);
            return Err(bad(path, Some(n), reason));
        }
    }
    Ok(())
}

/// The queries that fetch every child whose `lookup_property` points at one of `parent_ids`,
/// within [`DEFAULT_URL_BUDGET`]. See [`children_of_with_budget`].
pub fn children_of(
    entity: &'static Entity,
    lookup_property: &str,
    parent_ids: &[String],
    select: &[String],
    extra_filter: Option<&str>,
    dialect: Dialect,
) -> Result<Vec<ODataQuery>, FilterError> {
    children_of_with_budget(
        entity,
        lookup_property,
        parent_ids,
        select,
        extra_filter,
        DEFAULT_URL_BUDGET,
        dialect,
    )
}

/// Like [`children_of`] with an explicit budget for the length of each relative URL.
///
/// All parent keys go into one `$filter` (an `In` on the key property, compiled by
/// [`filter::compile_for`] in `dialect`, so the property name and every value are validated and
/// escaped); the list is split into several queries only when one URL would exceed `budget`. The
/// key may be a GUID (a primary key or lookup) or a readable string key (`mshr_partynumber`):
/// Dataverse cannot filter on lookups to virtual tables, so to-many joins go through readable
/// keys. String keys are sent exactly as given; keys equal but for case are sent once (Dataverse
/// compares strings case-insensitively), as are duplicate GUIDs. The key property is added to a non-empty `select`, so the caller can group the children by
/// parent. A single key whose URL alone passes the budget still gets its query (Dataverse allows
/// 32 KB).
pub fn children_of_with_budget(
    entity: &'static Entity,
    lookup_property: &str,
    parent_ids: &[String],
    select: &[String],
    extra_filter: Option<&str>,
    budget: usize,
    dialect: Dialect,
) -> Result<Vec<ODataQuery>, FilterError> {
    let is_guid = entity
        .property(lookup_property)
        .map(|p| p.ty == crate::model::PropType::Guid)
        .ok_or_else(|| bad("lookup", Some(lookup_property), "no such property".to_string()))?;
    let mut ids: Vec<Literal> = Vec::with_capacity(parent_ids.len());
    let mut seen = std::collections::HashSet::with_capacity(parent_ids.len());
    for (i, id) in parent_ids.iter().enumerate() {
        let lit = if is_guid {
            Literal::Guid(
                escape::guid(id).map_err(|reason| bad(&format!("parent_ids[{i}]"), Some(lookup_property), reason))?,
            )
        } else {
            Literal::String(id.clone())
        };
        if seen.insert(id.to_lowercase()) {
            ids.push(lit);
        }
    }
    let mut select = select.to_vec();
    if !select.is_empty() && !select.iter().any(|s| s == lookup_property) {
        select.push(lookup_property.to_string());
    }
    check_names(entity, &select, "select")?;
    let build = |chunk: &[Literal]| -> Result<ODataQuery, FilterError> {
        let f = Filter::In {
            property: lookup_property.to_string(),
            values: chunk.to_vec(),
        };
        let parents = filter::compile_for(&f, entity, None, dialect)?;
        let filter = match extra_filter {
            Some(extra) => format!("({extra}) and {parents}"),
            None => parents,
        };
        Ok(ODataQuery {
            select: select.clone(),
            filter: Some(filter),
            ..ODataQuery::new(entity)
        })
    };
    let mut out = Vec::new();
    let mut rest = ids.as_slice();
    while !rest.is_empty() {
        // The URL grows with every key: find the largest prefix within the budget by bisection.
        let fits = |n: usize| build(&rest[..n]).map(|q| q.to_relative_url().len() <= budget);
        let (mut lo, mut hi) = (1, rest.len());
        if fits(hi)? {
            lo = hi;
        } else {
            while lo + 1 < hi {
                let mid = (lo + hi) / 2;
                if fits(mid)? {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
        }
        out.push(build(&rest[..lo])?);
        rest = &rest[lo..];
    }
    Ok(out)
}
