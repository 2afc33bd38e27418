//! The upstream twin of the cost limit: how many upstream requests a query may cost, estimated
//! from its selection before it runs, and refused above `--max-upstream-requests-per-operation`
//! (code [`super::errors::ErrorCode::TooManyUpstreamRequests`], with the estimate in the error).
//!
//! The estimate follows how the gateway reads (`resolve`, `loaders`, `prefetch`):
//!
//! - a root list field is one request for its page (`first` is at most 5000, one page), a root
//!   single field one request;
//! - each relation is one request per level and group of parents, split by URL length (at most
//!   [`KEYS_PER_REQUEST`] parent keys in one URL) and by pages of 5000 children;
//! - a level's parents are the list's `first` (or the default page size) times the children per
//!   parent of the to-many relations above it (their `first`, or the relation estimate);
//! - `_entities` (`--federation`) is one level per entity type its fragments select, of all the
//!   representations.
//!
//! It is an upper bound in the common cases: it ignores what coalescing, the caches and `$expand`
//! pushdown save, and counts an aliased copy of a relation again. Mutations are not estimated:
//! their writes are what the client asked for, and their results are read by id.

use crate::model::{model, Cardinality, Entity};
use async_graphql::parser::types::{ExecutableDocument, Field, OperationType, Selection, SelectionSet};
use async_graphql::{Value, Variables};

/// Parent keys one relation request holds at most: the URL budget over a generous length per
/// key (a quoted, percent-encoded readable key or GUID, with its separator, or an `or … eq …`).
pub const KEYS_PER_REQUEST: u64 = (crate::odata::DEFAULT_URL_BUDGET / 64) as u64;

/// Rows one upstream page holds at most (contract §3).
const PAGE_ROWS: u64 = crate::odata::MAX_PAGE_SIZE as u64;

/// What the estimate needs to know of the settings.
#[derive(Debug, Clone, Copy)]
pub struct Estimator<'a> {
    /// The page size of a list field without `first`.
    pub default_first: u64,
    /// The children per parent of a to-many relation without `first`.
    pub relation_estimate: u64,
    pub variables: &'a Variables,
}

impl Estimator<'_> {
    /// Upstream requests the costliest query operation of `doc` may make.
    pub fn operation(&self, doc: &ExecutableDocument) -> u64 {
        doc.operations
            .iter()
            .filter(|(_, op)| op.node.ty == OperationType::Query)
            .map(|(_, op)| self.selection(doc, None, &op.node.selection_set.node, 1, &mut Vec::new()))
            .max()
            .unwrap_or(0)
    }

    /// Requests of a selection set on `entity` (`None`: the root) with `parents` records.
    fn selection(
        &self,
        doc: &ExecutableDocument,
        entity: Option<&'static Entity>,
        set: &SelectionSet,
        parents: u64,
        fragments: &mut Vec<String>,
    ) -> u64 {
        let mut total: u64 = 0;
        for sel in &set.items {
            let cost = match &sel.node {
                Selection::Field(f) => self.field(doc, entity, &f.node, parents, fragments),
                Selection::InlineFragment(i) => {
                    self.selection(doc, entity, &i.node.selection_set.node, parents, fragments)
                }
                Selection::FragmentSpread(s) => {
                    let name = s.node.fragment_name.node.to_string();
                    match doc.fragments.get(&s.node.fragment_name.node) {
                        // A fragment spread inside itself is a validation error later.
                        Some(frag) if !fragments.contains(&name) => {
                            fragments.push(name);
                            let c = self.selection(doc, entity, &frag.node.selection_set.node, parents, fragments);
                            fragments.pop();
                            c
                        }
                        _ => 0,
                    }
                }
            };
            total = total.saturating_add(cost);
        }
        total
    }

    /// Requests of one field and what is under it.
    fn field(
        &self,
        doc: &ExecutableDocument,
        entity: Option<&'static Entity>,
        f: &Field,
        parents: u64,
        fragments: &mut Vec<String>,
    ) -> u64 {
        let name = f.name.node.as_str();
        let inner = &f.selection_set.node;
        let Some(entity) = entity else {
            if name == "_entities" {
                return self.entities(doc, f, fragments);
            }
            // A root field: a list (a page of `first` records) or a single record.
            let by_list = model().entities.iter().find(|e| e.graphql.list_field == name);
            let by_single = model().entities.iter().find(|e| e.graphql.single_field == name);
            return match (by_list, by_single) {
                (Some(e), _) => {
                    let rows = self.first(f).unwrap_or(self.default_first).max(1);
                    1 + self.selection(doc, Some(e), inner, rows, fragments)
                }
                (None, Some(e)) => 1 + self.selection(doc, Some(e), inner, 1, fragments),
                (None, None) => 0, // introspection, `__typename`
            };
        };
        let Some(r) = entity.graphql.relations.iter().find(|r| r.field == name) else {
            // A property, or a connection's wrapper (`nodes`, `edges { node }`): same records.
            return self.selection(doc, Some(entity), inner, parents, fragments);
        };
        let target = model().by_logical_name(&r.target).expect("relation target in model");
        let per_parent = match r.kind {
            Cardinality::Many => self.first(f).unwrap_or(self.relation_estimate).max(1),
            _ => 1,
        };
        let rows = parents.saturating_mul(per_parent);
        let requests = parents.div_ceil(KEYS_PER_REQUEST).max(rows.div_ceil(PAGE_ROWS)).max(1);
        requests.saturating_add(self.selection(doc, Some(target), inner, rows, fragments))
    }

    /// Requests of `_entities` (`--federation`): per entity type a fragment selects, one level of
    /// all the representations (by key, split by URL length), and what is under it.
    fn entities(&self, doc: &ExecutableDocument, f: &Field, fragments: &mut Vec<String>) -> u64 {
        let reps = self.list_len(f, "representations").unwrap_or(1).max(1);
        let mut total: u64 = 0;
        for sel in &f.selection_set.node.items {
            let (condition, set) = match &sel.node {
                Selection::InlineFragment(i) => (i.node.type_condition.as_ref(), &i.node.selection_set.node),
                Selection::FragmentSpread(s) => match doc.fragments.get(&s.node.fragment_name.node) {
                    Some(frag) => (Some(&frag.node.type_condition), &frag.node.selection_set.node),
                    None => continue,
                },
                Selection::Field(_) => continue, // `__typename`
            };
            let ty = condition.map(|c| c.node.on.node.as_str());
            let Some(e) = model()
                .entities
                .iter()
                .find(|e| Some(e.graphql.type_name.as_str()) == ty)
            else {
                continue;
            };
            let requests = reps.div_ceil(KEYS_PER_REQUEST).max(1);
            total = total.saturating_add(requests.saturating_add(self.selection(doc, Some(e), set, reps, fragments)));
        }
        total
    }

    /// The length of the field's list argument `name`.
    fn list_len(&self, field: &Field, name: &str) -> Option<u64> {
        match self.argument(field, name)? {
            Value::List(items) => Some(items.len() as u64),
            _ => None,
        }
    }

    /// The field's `first` argument.
    fn first(&self, field: &Field) -> Option<u64> {
        match self.argument(field, "first")? {
            Value::Number(n) => n.as_u64(),
            _ => None,
        }
    }

    /// The field's argument `name`, from a literal or a variable.
    fn argument(&self, field: &Field, name: &str) -> Option<Value> {
        let (_, v) = field.arguments.iter().find(|(n, _)| n.node.as_str() == name)?;
        v.node
            .clone()
            .into_const_with(|name| self.variables.get(&name).cloned().ok_or(()))
            .ok()
    }
}

/// The refusal of an operation whose estimate is over `limit`.
pub fn refusal(estimate: u64, limit: u64) -> async_graphql::ServerError {
    use async_graphql::ErrorExtensions;
    let message = format!(
        "The query may cost {estimate} upstream request{} (a list's page, plus one per relation and level, split by {KEYS_PER_REQUEST} parents per request); at most {limit} {} accepted per operation. Ask for fewer records with `first`, or fewer relations.",
        if estimate == 1 { "" } else { "s" },
        if limit == 1 { "is" } else { "are" },
    );
    super::errors::ErrorCode::TooManyUpstreamRequests
        .error(message)
        .extend_with(|_, e| {
            e.set("estimatedUpstreamRequests", estimate);
            e.set("maxUpstreamRequests", limit);
        })
        .into_server_error(Default::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn estimate(query: &str, variables: serde_json::Value) -> u64 {
        let doc = async_graphql::parser::parse_query(query).unwrap();
        let variables = Variables::from_json(variables);
        Estimator {
            default_first: 100,
            relation_estimate: 10,
            variables: &variables,
        }
        .operation(&doc)
    }

    const CANONICAL: &str = "query($n: Int) { recruitingRequests(first: $n) { nodes { id recruitingRequestId description status
        positions { positionId status description } skills { skillId ratingLevelId } educations { educationLevelId educationDisciplineId }
        location { description city } recruiter { name partyNumber } } } }";

    #[test]
    fn the_canonical_query_costs_a_page_and_one_request_per_relation() {
        assert_eq!(estimate(CANONICAL, serde_json::json!({"n": 10})), 6);
        assert_eq!(estimate(CANONICAL, serde_json::json!({"n": 50})), 6);
    }

    #[test]
    fn levels_multiply_parents_and_split_by_url_length_and_pages() {
        let q = "{ recruitingRequests(first: 500) { nodes { positions(first: 100) { positionId } } } }";
        // 500 parents: 2 URLs; 50,000 children: 10 pages of 5000.
        assert_eq!(estimate(q, serde_json::json!({})), 1 + 10);
        let single = "{ recruitingRequest(id: \"x\") { positions { positionId } } }";
        assert_eq!(estimate(single, serde_json::json!({})), 2);
    }

    #[test]
    fn fragments_mutations_and_introspection() {
        let q = "query { recruitingRequests(first: 5) { ...F } } fragment F on RecruitingRequestConnection { nodes { positions { positionId } } }";
        assert_eq!(estimate(q, serde_json::json!({})), 2);
        assert_eq!(estimate("{ __schema { types { name } } }", serde_json::json!({})), 0);
        assert_eq!(
            estimate("mutation { a: deleteX(id: \"1\") { ok } }", serde_json::json!({})),
            0
        );
    }

    #[test]
    fn entities_cost_a_level_per_type_and_what_is_under_them() {
        let q = "query($r: [_Any!]!) { _entities(representations: $r) { __typename
            ... on RecruitingRequest { id positions { positionId } } ...P } }
            fragment P on Person { partyNumber }";
        let reps = |n: usize| serde_json::json!({ "r": vec![serde_json::json!({}); n] });
        // Recruiting requests and their positions, persons: 3.
        assert_eq!(estimate(q, reps(50)), 3);
        let per_url = KEYS_PER_REQUEST as usize;
        // Twice the keys of one URL: two requests per level (the positions' level too).
        assert_eq!(estimate(q, reps(2 * per_url)), 6);
    }

    #[test]
    fn the_refusal_carries_the_estimate() {
        let e = refusal(120, 50);
        let ext = e.extensions.unwrap();
        assert_eq!(ext.get("code"), Some(&Value::from("TOO_MANY_UPSTREAM_REQUESTS")));
        assert_eq!(ext.get("estimatedUpstreamRequests"), Some(&Value::from(120u64)));
    }
}
