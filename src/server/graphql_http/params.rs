//! The parameters of a GraphQL-over-HTTP request (`query`, `operationName`, `variables`,
//! `extensions`), read from a POST's JSON body or a GET's URL query, and checked for shape: a
//! request with a parameter of the wrong type is not well-formed and is refused with `400`.
//! Whether the query parses or validates is for the schema to say, not for this module.

use serde_json::{Map, Value};

/// The parameters, of the right types. `null` and absent are the same.
#[derive(Debug, Default, PartialEq)]
pub struct Params {
    /// Absent when a persisted-query hash stands in for it.
    pub query: Option<String>,
    /// `None` for absent, `null` or the empty string.
    pub operation_name: Option<String>,
    pub variables: Option<Map<String, Value>>,
    pub extensions: Option<Map<String, Value>>,
}

/// Why a request is not a well-formed GraphQL-over-HTTP request.
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed(pub String);

impl Params {
    /// From a JSON body: an object with the parameters as members; other members are ignored.
    pub fn from_json_body(body: &[u8]) -> Result<Params, Malformed> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(Malformed(
                "the request has no body: send a JSON object with a `query`".into(),
            ));
        }
        let body: Value =
            serde_json::from_slice(body).map_err(|e| Malformed(format!("the body is not valid JSON: {e}")))?;
        let mut body = match body {
            Value::Object(map) => map,
            Value::Array(_) => return Err(Malformed("batched requests (a JSON array) are not supported".into())),
            _ => return Err(Malformed("the body must be a JSON object".into())),
        };
        Ok(Params {
            query: string(body.remove("query"), "query")?,
            operation_name: string(body.remove("operationName"), "operationName")?.filter(|n| !n.is_empty()),
            variables: object(body.remove("variables"), "variables")?,
            extensions: object(body.remove("extensions"), "extensions")?,
        })
    }

    /// From a URL query in `application/x-www-form-urlencoded`: `variables` and `extensions` are
    /// JSON texts.
    pub fn from_url_query(query: &str) -> Result<Params, Malformed> {
        let mut params = Params::default();
        let mut seen = Vec::new();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            let name: &'static str = match name.as_ref() {
                "query" => "query",
                "operationName" => "operationName",
                "variables" => "variables",
                "extensions" => "extensions",
                _ => continue,
            };
            if seen.contains(&name) {
                return Err(Malformed(format!("`{name}` is given more than once")));
            }
            seen.push(name);
            let value = value.into_owned();
            match name {
                "query" => params.query = Some(value),
                "operationName" => params.operation_name = Some(value).filter(|n| !n.is_empty()),
                "variables" => params.variables = object(json_text(&value, name)?, name)?,
                _ => params.extensions = object(json_text(&value, name)?, name)?,
            }
        }
        Ok(params)
    }
}

fn string(value: Option<Value>, name: &str) -> Result<Option<String>, Malformed> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Malformed(format!("`{name}` must be a string"))),
    }
}

fn object(value: Option<Value>, name: &str) -> Result<Option<Map<String, Value>>, Malformed> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(_) => Err(Malformed(format!("`{name}` must be an object"))),
    }
}

/// A URL parameter holding JSON; the empty string counts as absent.
fn json_text(text: &str, name: &str) -> Result<Option<Value>, Malformed> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(text)
        .map(Some)
        .map_err(|e| Malformed(format!("`{name}` is not valid JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: Value) -> Result<Params, Malformed> {
        Params::from_json_body(v.to_string().as_bytes())
    }

    #[test]
    fn reads_a_json_body() {
        let p = body(json!({
            "query": "query Q($a: Int) { __typename }",
            "operationName": "Q",
            "variables": {"a": 1},
            "extensions": {"x": true},
            "unknown": 3,
        }))
        .unwrap();
        assert_eq!(p.query.as_deref(), Some("query Q($a: Int) { __typename }"));
        assert_eq!(p.operation_name.as_deref(), Some("Q"));
        assert_eq!(p.variables.unwrap()["a"], 1);
        assert_eq!(p.extensions.unwrap()["x"], true);
        let nulls =
            body(json!({"query": "{ __typename }", "operationName": null, "variables": null, "extensions": null}));
        assert_eq!(nulls.unwrap().operation_name, None);
        assert_eq!(body(json!({"operationName": ""})).unwrap(), Params::default());
    }

    #[test]
    fn refuses_malformed_bodies() {
        for bad in [
            "",
            "  ",
            "{ \"not a JSON",
            "NONSENSE",
            "[{\"query\": \"{a}\"}]",
            "\"{a}\"",
            "7",
        ] {
            assert!(Params::from_json_body(bad.as_bytes()).is_err(), "{bad:?}");
        }
        for bad in [
            json!({"query": {"obj": "ect"}}),
            json!({"query": 0}),
            json!({"query": false}),
            json!({"query": ["array"]}),
            json!({"query": "{a}", "operationName": 0}),
            json!({"query": "{a}", "variables": "string"}),
            json!({"query": "{a}", "variables": [7]}),
            json!({"query": "{a}", "extensions": false}),
        ] {
            assert!(body(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn reads_a_url_query() {
        let p = Params::from_url_query(
            "query=query%20Q(%24a%3A%20Int)%7B__typename%7D&operationName=Q&variables=%7B%22a%22%3A1%7D&other=1",
        )
        .unwrap();
        assert_eq!(p.query.as_deref(), Some("query Q($a: Int){__typename}"));
        assert_eq!(p.operation_name.as_deref(), Some("Q"));
        assert_eq!(p.variables.unwrap()["a"], 1);
        let p = Params::from_url_query("query=%7B__typename%7D&operationName=&variables=&extensions=null").unwrap();
        assert_eq!((p.operation_name, p.variables, p.extensions), (None, None, None));
        assert_eq!(Params::from_url_query("").unwrap(), Params::default());
    }

    #[test]
    fn refuses_malformed_url_queries() {
        for bad in [
            "query=a&query=b",
            "query=%7Ba%7D&variables=%7Bnot",
            "query=%7Ba%7D&variables=%5B1%5D",
            "query=%7Ba%7D&extensions=3",
        ] {
            assert!(Params::from_url_query(bad).is_err(), "{bad}");
        }
    }
}
