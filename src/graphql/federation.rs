//! The schema as an Apollo Federation v2 subgraph (`--federation`, off by default), through
//! async-graphql's own federation support.
//!
//! - Every entity type gets `@key(fields: "id")`, and a second key on its readable ID where the
//!   model says one identifies a record: a number-sequence property (`recruitingRequestId`,
//!   `candidateId`, `partyNumber`), with the company code beside it when the sequence is per
//!   company (`recruitingRequestId dataAreaId`). Without the flag no type has a key, and
//!   async-graphql adds neither `_service` nor `_entities`.
//! - `_service { sdl }` is async-graphql's federation export: `@link` to Federation v2 with the
//!   directives imported. The value types other subgraphs may define too (`PageInfo`, the
//!   connections and edges) are `@shareable`.
//! - `_entities(representations:)` resolves through the operation's own loaders: by `id`, one
//!   `RecordLoader` level (one upstream request per type and URL-length chunk, memo and caches
//!   included); by a readable key, one `ChildLoader` level on the key's first property, with the
//!   company codes as a filter compiled (and escaped) by the filter compiler, matched exactly
//!   here. A bad representation is `BAD_USER_INPUT`; one that matches nothing is `null`.

use super::context::GatewayState;
use super::errors::{bad_input, upstream_error};
use super::filter::compile_filter;
use super::loaders::{fold, load_now, ChildGroup, ChildKey, Record, RecordGroup, RecordKey};
use super::prefetch::{prefetch, Loaders};
use super::resolve::{select_for, Row};
use crate::model::{model, Entity, Property};
use async_graphql::dynamic::{FieldFuture, FieldValue, Object, ResolverContext, SchemaBuilder};
use async_graphql::extensions::ResolveInfo;
use async_graphql::{Name, SDLExportOptions, SelectionField, ServerResult, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// The most representations one `_entities` call may carry (the loaders' row limit).
pub const MAX_REPRESENTATIONS: usize = 5000;

/// The keys of an entity, most specific first: the primary key, then the readable key if the
/// model has one (a number-sequence property, and the company code when the sequence is per
/// company).
pub fn keys(e: &'static Entity) -> Vec<Vec<&'static Property>> {
    let pk = e.property(&e.primary_key).expect("the primary key is a property");
    let mut out = vec![vec![pk]];
    let mut sequences: Vec<&String> = e.sequences.keys().collect();
    sequences.sort();
    for seq in sequences {
        let Some(p) = e.property(seq) else { continue };
        let mut key = vec![p];
        if let Some(company) = e.company_property.as_deref().and_then(|c| e.property(c)) {
            key.push(company);
        }
        out.push(key);
    }
    out
}

/// A key's `fields` argument: its GraphQL field names, space-separated.
pub fn key_fields(key: &[&Property]) -> String {
    key.iter()
        .map(|p| p.graphql_field.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `o` (the object type of `e`) with its `@key`s.
pub fn with_keys(mut o: Object, e: &'static Entity) -> Object {
    for key in keys(e) {
        o = o.key(key_fields(&key));
    }
    o
}

/// Turns federation on for `builder` and answers `_entities`.
pub fn enable(builder: SchemaBuilder) -> SchemaBuilder {
    builder
        .enable_federation()
        .entity_resolver(|ctx| FieldFuture::new(async move { resolve_entities(&ctx).await.map(Some) }))
}

/// What async-graphql (7.2) says of a union list item that is not an object: a null.
const NULL_ITEM: &str = "internal: invalid value for union \"_Entity\", expected \"FieldValue::WithType\"";

/// Whether the field being resolved is an item of `_entities`' list.
pub fn is_entity_item(info: &ResolveInfo<'_>) -> bool {
    info.parent_type == "[_Entity]" && info.return_type == "_Entity"
}

/// Lets `_entities` answer `null` for a representation that matches no record, as routers
/// expect: `result` is an `_entities` item's. The dynamic schema has no null items in a list of
/// a union: it refuses them with [`NULL_ITEM`], and one refused item would fail the whole list.
/// This turns that refusal back into the null it was. Called from the schema's one extension
/// (`limits`) with `--federation`, since another extension would cost a boxed future per field.
pub fn missing_as_null(result: ServerResult<Option<Value>>) -> ServerResult<Option<Value>> {
    match result {
        Err(e) if e.message == NULL_ITEM => Ok(None),
        other => other,
    }
}

/// The subgraph SDL (what `_service { sdl }` answers), as checked in at `schema.federation.graphql`.
pub fn sdl() -> String {
    let limits = super::SchemaLimits {
        federation: true,
        ..Default::default()
    };
    super::build_schema(None, &limits)
        .expect("the schema builds")
        .sdl_with_options(SDLExportOptions::new().federation().compose_directive())
}

/// One representation, checked: its place in the list, its entity and how to find it.
#[derive(Debug)]
enum Rep {
    ById {
        entity: &'static Entity,
        id: String,
    },
    /// By the readable key `keys(entity)[key]`, with one value per field.
    ByKey {
        entity: &'static Entity,
        key: usize,
        values: Vec<String>,
    },
}

impl PartialEq for Rep {
    fn eq(&self, o: &Rep) -> bool {
        match (self, o) {
            (Rep::ById { entity: a, id: x }, Rep::ById { entity: b, id: y }) => std::ptr::eq(*a, *b) && x == y,
            (
                Rep::ByKey {
                    entity: a,
                    key: k,
                    values: x,
                },
                Rep::ByKey {
                    entity: b,
                    key: l,
                    values: y,
                },
            ) => std::ptr::eq(*a, *b) && k == l && x == y,
            _ => false,
        }
    }
}

impl Rep {
    fn entity(&self) -> &'static Entity {
        match self {
            Rep::ById { entity, .. } | Rep::ByKey { entity, .. } => entity,
        }
    }
}

/// Checks representation `index`: a known entity type and all the fields of one of its keys.
fn parse_rep(index: usize, v: &Value) -> async_graphql::Result<Rep> {
    let bad = |why: String| bad_input(format!("representations[{index}]: {why}"));
    let Value::Object(obj) = v else {
        return Err(bad(
            "a representation is an object with `__typename` and key fields.".into()
        ));
    };
    let string = |name: &str| match obj.get(name) {
        Some(Value::String(s)) => Some(s.as_str()),
        _ => None,
    };
    let typename = string("__typename").ok_or_else(|| bad("`__typename` is missing or not a string.".into()))?;
    let entity = model()
        .entities
        .iter()
        .find(|e| e.graphql.type_name == typename)
        .ok_or_else(|| bad(format!("`{typename}` is not an entity type of this subgraph.")))?;
    for (k, key) in keys(entity).iter().enumerate() {
        let values: Option<Vec<&str>> = key.iter().map(|p| string(&p.graphql_field)).collect();
        let Some(values) = values else { continue };
        if k == 0 {
            let id = crate::odata::escape::guid(values[0])
                .map_err(|_| bad(format!("`{}` is not a valid id: ids are GUIDs.", values[0])))?;
            return Ok(Rep::ById {
                entity,
                id: id.to_ascii_lowercase(),
            });
        }
        return Ok(Rep::ByKey {
            entity,
            key: k,
            values: values.into_iter().map(str::to_string).collect(),
        });
    }
    let wanted: Vec<String> = keys(entity).iter().map(|k| format!("`{}`", key_fields(k))).collect();
    Err(bad(format!(
        "a `{typename}` needs the string fields of one of its keys: {}.",
        wanted.join(" or ")
    )))
}

/// `_entities(representations:)`: the records, in the representations' order.
async fn resolve_entities<'a>(ctx: &ResolverContext<'a>) -> async_graphql::Result<FieldValue<'a>> {
    let list = ctx.args.try_get("representations")?.list()?;
    if list.len() > MAX_REPRESENTATIONS {
        return Err(bad_input(format!(
            "At most {MAX_REPRESENTATIONS} representations per `_entities` (got {}).",
            list.len()
        )));
    }
    let reps = list
        .iter()
        .enumerate()
        .map(|(i, v)| parse_rep(i, v.as_value()))
        .collect::<async_graphql::Result<Vec<Rep>>>()?;
    let loaders = Loaders::from_context(ctx).ok_or_else(|| async_graphql::Error::new("no loaders"))?;
    let selection: Vec<SelectionField<'_>> = ctx.field().selection_set().collect();
    let by_id = load_by_id(&loaders, &reps, &selection).await?;
    let by_key = load_by_key(ctx.data::<Arc<GatewayState>>()?, &loaders, &reps, &selection).await?;
    let records: Vec<Option<Record>> = reps
        .iter()
        .enumerate()
        .map(|(i, rep)| match rep {
            Rep::ById { entity, id } => by_id.get(&(entity.logical_name.as_str(), id.clone())).cloned(),
            Rep::ByKey { .. } => by_key.get(&i).cloned(),
        })
        .collect();
    // Relations selected under the records load level by level, as under a list. Only for one
    // type: the selection mixes every type's fragments, and another type's relation of the same
    // name would be loaded for nothing (the resolvers batch through the loaders anyway).
    let first = reps.first().map(Rep::entity);
    if let Some(e) = first.filter(|e| reps.iter().all(|r| std::ptr::eq(r.entity(), *e))) {
        prefetch(loaders, e, selection, records.iter().flatten().cloned().collect()).await;
    }
    Ok(FieldValue::list(reps.iter().zip(records).map(|(rep, record)| {
        let entity = rep.entity();
        match record {
            Some(record) => FieldValue::owned_any(Row { entity, record }).with_type(entity.graphql.type_name.clone()),
            None => FieldValue::NULL,
        }
    })))
}

/// The `ById` representations' records, by (entity, lower-case id): one `RecordLoader` level.
async fn load_by_id(
    loaders: &Loaders<'_>,
    reps: &[Rep],
    selection: &[SelectionField<'_>],
) -> async_graphql::Result<HashMap<(&'static str, String), Record>> {
    let mut groups: HashMap<&str, Arc<RecordGroup>> = HashMap::new();
    let mut keys = Vec::new();
    for rep in reps {
        let Rep::ById { entity, id } = rep else { continue };
        let group = groups
            .entry(entity.logical_name.as_str())
            .or_insert_with(|| Arc::new(RecordGroup::new(entity, select_for(entity, selection.iter().copied()))));
        keys.push(RecordKey {
            group: group.clone(),
            id: id.clone(),
        });
    }
    let found = load_now(loaders.records, keys).await.map_err(|e| upstream_error(&e))?;
    Ok(found
        .into_iter()
        .map(|(k, r)| ((k.group.entity.logical_name.as_str(), k.id), r))
        .collect())
}

/// The `ByKey` representations' records, by their index: one `ChildLoader` level, a group per
/// (entity, key) joined on the key's first field and filtered on the others' values.
async fn load_by_key(
    st: &Arc<GatewayState>,
    loaders: &Loaders<'_>,
    reps: &[Rep],
    selection: &[SelectionField<'_>],
) -> async_graphql::Result<HashMap<usize, Record>> {
    let mut groups: HashMap<(&str, usize), Arc<ChildGroup>> = HashMap::new();
    for rep in reps {
        let Rep::ByKey { entity, key, .. } = rep else { continue };
        if groups.contains_key(&(entity.logical_name.as_str(), *key)) {
            continue;
        }
        let group = key_group(&st.labels(), st.config.dialect, entity, *key, reps, selection)?;
        groups.insert((entity.logical_name.as_str(), *key), Arc::new(group));
    }
    let child_key = |rep: &Rep| match rep {
        Rep::ByKey { entity, key, values } => {
            let group = groups[&(entity.logical_name.as_str(), *key)].clone();
            Some(ChildKey::new(group, values[0].clone()))
        }
        Rep::ById { .. } => None,
    };
    let found = load_now(loaders.children, reps.iter().filter_map(child_key))
        .await
        .map_err(|e| upstream_error(&e))?;
    let mut out = HashMap::new();
    for (i, rep) in reps.iter().enumerate() {
        let (Some(k), Rep::ByKey { entity, key, values }) = (child_key(rep), rep) else {
            continue;
        };
        let fields = &keys(entity)[*key];
        let matches = |r: &&Record| {
            fields.iter().zip(values).all(|(p, v)| {
                r.get(&p.name)
                    .and_then(serde_json::Value::as_str)
                    .is_some_and(|s| fold(s) == fold(v))
            })
        };
        if let Some(r) = found.get(&k).and_then(|rows| rows.iter().find(matches)) {
            out.insert(i, r.clone());
        }
    }
    Ok(out)
}

/// The loader group of the representations of `entity` by its key `key`: joined on the key's
/// first property; the other fields' values (the company codes) are an `in` filter, compiled and
/// escaped by the filter compiler like a client's.
fn key_group(
    labels: &crate::odata::options::OptionSetLabels,
    dialect: crate::odata::Dialect,
    entity: &'static Entity,
    key: usize,
    reps: &[Rep],
    selection: &[SelectionField<'_>],
) -> async_graphql::Result<ChildGroup> {
    let fields = &keys(entity)[key];
    let mut conditions = Vec::new();
    for (n, p) in fields.iter().enumerate().skip(1) {
        let mut values: Vec<&str> = reps
            .iter()
            .filter_map(|r| match r {
                Rep::ByKey {
                    entity: e,
                    key: k,
                    values,
                } if std::ptr::eq(*e, entity) && *k == key => Some(values[n].as_str()),
                _ => None,
            })
            .collect();
        values.sort_unstable();
        values.dedup();
        let list = Value::List(values.into_iter().map(|v| Value::String(v.to_string())).collect());
        let condition = [(Name::new("in"), list)].into_iter().collect();
        conditions.push(Value::Object(
            [(Name::new(&p.graphql_field), Value::Object(condition))]
                .into_iter()
                .collect(),
        ));
    }
    let filter = match conditions.is_empty() {
        true => None,
        false => {
            let and = Value::Object([(Name::new("and"), Value::List(conditions))].into_iter().collect());
            Some(compile_filter(entity, &and, labels, dialect)?)
        }
    };
    let mut select = select_for(entity, selection.iter().copied());
    for p in fields {
        if !select.contains(&p.name) {
            select.push(p.name.clone());
        }
    }
    Ok(ChildGroup::new(
        entity,
        fields[0].name.clone(),
        select,
        filter,
        Vec::new(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(ty: &str) -> &'static Entity {
        model()
            .entities
            .iter()
            .find(|e| e.graphql.type_name == ty)
            .expect("entity")
    }

    #[test]
    fn readable_keys_come_from_the_model() {
        let spec = |ty: &str| keys(entity(ty)).iter().map(|k| key_fields(k)).collect::<Vec<_>>();
        assert_eq!(spec("RecruitingRequest"), ["id", "recruitingRequestId dataAreaId"]);
        assert_eq!(spec("Person"), ["id", "partyNumber"]);
        assert_eq!(spec("CandidateToHire"), ["id", "candidateId dataAreaId"]);
        assert_eq!(spec("RecruitingRequestPosition"), ["id"]);
    }

    #[test]
    fn readable_key_values_reach_the_filter_escaped() {
        let e = entity("RecruitingRequest");
        let rep = |id: &str, company: &str| Rep::ByKey {
            entity: e,
            key: 1,
            values: vec![id.into(), company.into()],
        };
        let reps = [
            rep("USMF-000001", "usmf"),
            rep("X-1", "o'x"),
            rep("USMF-000002", "usmf"),
        ];
        let labels = Default::default();
        let group = key_group(&labels, crate::odata::Dialect::Odata4, e, 1, &reps, &[]).unwrap();
        assert_eq!(group.key_property, "mshr_recruitingrequestid");
        // Each company once, the quote doubled; the key's fields are selected to match on.
        assert_eq!(
            group.filter.as_deref(),
            Some("(mshr_dataareaid eq 'o''x' or mshr_dataareaid eq 'usmf')")
        );
        for p in [
            "mshr_recruitingrequestid",
            "mshr_dataareaid",
            "mshr_hcmrecruitingrequestentityid",
        ] {
            assert!(group.select.iter().any(|s| s == p), "{p} selected");
        }
    }

    #[test]
    fn representations_are_checked() {
        let parse = |v: serde_json::Value| {
            let v = Value::from_json(v).unwrap();
            parse_rep(3, &v)
        };
        let id = "00000D6B-0000-0000-0000-005001000000";
        assert_eq!(
            parse(serde_json::json!({"__typename": "RecruitingRequest", "id": id})).unwrap(),
            Rep::ById {
                entity: entity("RecruitingRequest"),
                id: id.to_ascii_lowercase()
            }
        );
        assert_eq!(
            parse(serde_json::json!({"__typename": "Person", "partyNumber": "HR000000001"})).unwrap(),
            Rep::ByKey {
                entity: entity("Person"),
                key: 1,
                values: vec!["HR000000001".into()]
            }
        );
        for (bad, says) in [
            (
                serde_json::json!({"__typename": "Nope", "id": id}),
                "not an entity type",
            ),
            (serde_json::json!({"id": id}), "`__typename` is missing"),
            (
                serde_json::json!({"__typename": "RecruitingRequest", "id": "x'"}),
                "not a valid id",
            ),
            (
                serde_json::json!({"__typename": "RecruitingRequest", "recruitingRequestId": "USMF-000001"}),
                "`id` or `recruitingRequestId dataAreaId`",
            ),
            (serde_json::json!("RecruitingRequest"), "is an object"),
        ] {
            let err = parse(bad.clone()).unwrap_err();
            assert!(
                err.message.starts_with("representations[3]: "),
                "{bad}: {}",
                err.message
            );
            assert!(err.message.contains(says), "{bad}: {}", err.message);
        }
    }
}
