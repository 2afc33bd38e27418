//! Option-set integers per environment. F&O enum integers are not stable between environments
//! (contract §0, §13.12), so the gateway maps the model's documented values to the upstream's by
//! label: [`OptionSetLabels::load`] reads `GlobalOptionSetDefinitions(Name='<name>')` for every
//! option set of the model and matches each option's label (case-insensitive) against the
//! model's `label`. Whatever it cannot read or match keeps its documented integer, and one
//! warning lists all of those, so a gateway on a partly-readable environment still starts.

use super::client::Upstream;
use super::escape;
use crate::model::{model, OptionSet, OptionValue};
use serde_json::Value;

/// Documented value <-> upstream integer, per option set.
#[derive(Debug, Clone, Default)]
pub struct OptionSetLabels {
    sets: foldhash::HashMap<String, SetMap>,
    fallbacks: Vec<String>,
}

#[derive(Debug, Clone, Default)]
struct SetMap {
    to_upstream: foldhash::HashMap<i64, i64>,
    from_upstream: foldhash::HashMap<i64, &'static OptionValue>,
}

impl OptionSetLabels {
    /// The documented integers, unchanged (what the emulator uses; no upstream call).
    pub fn documented() -> Self {
        let defs = model().option_sets.iter().map(|s| (s, Ok(Value::Null)));
        let mut labels = Self::build(defs);
        labels.fallbacks.clear();
        labels
    }

    /// Reads every option set of the model from the upstream (one GET each). Never fails: see
    /// the module docs for the fall-back.
    pub async fn load(upstream: &Upstream, auth: Option<&str>) -> Self {
        let mut defs = Vec::with_capacity(model().option_sets.len());
        for set in &model().option_sets {
            let path = escape::percent_encode_path_segment(&format!(
                "GlobalOptionSetDefinitions(Name={})",
                escape::string_literal(&set.name)
            ));
            let def = upstream.get_json(&path, auth).await.map_err(|e| e.to_string());
            defs.push((set, def));
        }
        let labels = Self::build(defs);
        if !labels.fallbacks.is_empty() {
            tracing::warn!(
                fallbacks = %labels.fallbacks.join("; "),
                "option-set labels: using the documented integers where the upstream definition could not be read or matched"
            );
        }
        labels
    }

    /// Builds the maps from each set's definition (or why it could not be read). A `Null`
    /// definition means "documented integers" without a complaint.
    pub fn build<I>(definitions: I) -> Self
    where
        I: IntoIterator<Item = (&'static OptionSet, Result<Value, String>)>,
    {
        let mut out = OptionSetLabels::default();
        for (set, def) in definitions {
            // `None`: nothing to match against (documented integers by choice or by failure).
            let upstream: Option<Vec<(i64, String)>> = match &def {
                Ok(Value::Null) => None,
                Ok(v) => {
                    let list = options_of(v);
                    if list.is_none() {
                        out.fallbacks.push(format!("{}: unexpected definition shape", set.name));
                    }
                    list
                }
                Err(e) => {
                    out.fallbacks.push(format!("{}: {e}", set.name));
                    None
                }
            };
            let mut map = SetMap::default();
            let mut unmatched = Vec::new();
            for value in &set.values {
                let found = upstream
                    .iter()
                    .flatten()
                    .find(|(_, label)| same_label(label, &value.label));
                let n = match found {
                    Some((n, _)) => *n,
                    None => {
                        if upstream.is_some() {
                            unmatched.push(value.label.as_str());
                        }
                        value.value
                    }
                };
                map.to_upstream.insert(value.value, n);
                // A learned integer wins over a documented one that happens to collide.
                if found.is_some() || !map.from_upstream.contains_key(&n) {
                    map.from_upstream.insert(n, value);
                }
            }
            if !unmatched.is_empty() {
                out.fallbacks
                    .push(format!("{}: no upstream label for {}", set.name, unmatched.join(", ")));
            }
            out.sets.insert(set.name.clone(), map);
        }
        out
    }

    /// The upstream integer for a documented value (the documented value when unknown).
    pub fn to_upstream(&self, set: &str, documented_value: i64) -> i64 {
        self.sets
            .get(set)
            .and_then(|m| m.to_upstream.get(&documented_value))
            .copied()
            .unwrap_or(documented_value)
    }

    /// The model's value for an upstream integer, `None` when the set has no such value.
    pub fn from_upstream(&self, set: &str, upstream_int: i64) -> Option<&OptionValue> {
        self.sets.get(set)?.from_upstream.get(&upstream_int).copied()
    }

    /// What fell back to documented integers, and why (empty when everything matched).
    pub fn fallbacks(&self) -> &[String] {
        &self.fallbacks
    }
}

/// Labels match case-insensitively (Unicode-aware) and ignoring surrounding blanks.
fn same_label(a: &str, b: &str) -> bool {
    a.trim().to_lowercase() == b.trim().to_lowercase()
}

/// `(Value, label)` of each option in an `OptionSetMetadata` document: the user's label, or any
/// localized one.
fn options_of(def: &Value) -> Option<Vec<(i64, String)>> {
    let options = def.get("Options")?.as_array()?;
    let mut out = Vec::new();
    for o in options {
        let Some(n) = o.get("Value").and_then(Value::as_i64) else {
            continue;
        };
        let label = o.get("Label");
        let user = label
            .and_then(|l| l.get("UserLocalizedLabel"))
            .and_then(|l| l.get("Label"))
            .and_then(Value::as_str);
        let localized = label
            .and_then(|l| l.get("LocalizedLabels"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|l| l.get("Label").and_then(Value::as_str));
        for text in user.into_iter().chain(localized) {
            out.push((n, text.to_string()));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn noyes() -> &'static OptionSet {
        model()
            .option_sets
            .iter()
            .find(|s| s.graphql_enum == "Boolean")
            .expect("a yes/no set")
    }

    fn definition(set: &OptionSet, shift: i64, upper: bool) -> Value {
        let options: Vec<Value> = set
            .values
            .iter()
            .map(|v| {
                let text = if upper { v.label.to_uppercase() } else { v.label.clone() };
                json!({"Value": v.value + shift, "Label": {"LocalizedLabels": [{"Label": text}], "UserLocalizedLabel": null}})
            })
            .collect();
        json!({ "Name": set.name, "Options": options })
    }

    #[test]
    fn labels_map_shifted_integers_both_ways() {
        let set = noyes();
        let labels = OptionSetLabels::build([(set, Ok(definition(set, 7, true)))]);
        assert!(labels.fallbacks().is_empty(), "{:?}", labels.fallbacks());
        for v in &set.values {
            assert_eq!(labels.to_upstream(&set.name, v.value), v.value + 7);
            assert_eq!(labels.from_upstream(&set.name, v.value + 7).unwrap().label, v.label);
        }
        assert!(labels.from_upstream(&set.name, -1).is_none());
    }

    #[test]
    fn unreadable_or_unmatched_sets_fall_back_to_documented_integers() {
        let set = noyes();
        let labels = OptionSetLabels::build([(set, Err("HTTP 403".to_string()))]);
        let v = &set.values[0];
        assert_eq!(labels.to_upstream(&set.name, v.value), v.value);
        assert_eq!(labels.from_upstream(&set.name, v.value).unwrap().label, v.label);
        assert_eq!(labels.fallbacks().len(), 1);
        let mut def = definition(set, 100, false);
        def["Options"].as_array_mut().unwrap().truncate(1);
        let labels = OptionSetLabels::build([(set, Ok(def))]);
        assert_eq!(
            labels.to_upstream(&set.name, set.values[0].value),
            set.values[0].value + 100
        );
        assert_eq!(labels.to_upstream(&set.name, set.values[1].value), set.values[1].value);
        assert!(labels.fallbacks()[0].contains(&set.values[1].label));
        let labels = OptionSetLabels::build([(set, Ok(json!({"nope": 1})))]);
        assert!(labels.fallbacks()[0].contains("shape"));
    }

    #[test]
    fn documented_covers_every_set_silently() {
        let labels = OptionSetLabels::documented();
        assert!(labels.fallbacks().is_empty());
        for set in &model().option_sets {
            for v in &set.values {
                assert_eq!(labels.to_upstream(&set.name, v.value), v.value);
                assert_eq!(labels.from_upstream(&set.name, v.value).unwrap().value, v.value);
            }
        }
    }
}
