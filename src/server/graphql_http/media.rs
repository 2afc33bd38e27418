//! Media types: which one a response uses (`Accept`), and whether a POST body is one we read
//! (`Content-Type`).

/// The media type of a GraphQL response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseMedia {
    /// `application/graphql-response+json`: the status code tells whether the operation ran.
    GraphqlResponseJson,
    /// `application/json`, for legacy clients: every well-formed request gets `200`.
    Json,
}

impl ResponseMedia {
    pub fn content_type(self) -> &'static str {
        match self {
            ResponseMedia::GraphqlResponseJson => "application/graphql-response+json; charset=utf-8",
            ResponseMedia::Json => "application/json; charset=utf-8",
        }
    }

    fn essence(self) -> (&'static str, &'static str) {
        match self {
            ResponseMedia::GraphqlResponseJson => ("application", "graphql-response+json"),
            ResponseMedia::Json => ("application", "json"),
        }
    }
}

/// Picks the response media type for an `Accept` header (all its values joined by commas), or
/// `None` when the client accepts neither (the caller answers `406`).
///
/// - No header: `application/graphql-response+json`, as the specification asks of servers since
///   its watershed (1 January 2025).
/// - Otherwise the acceptable type with the highest `q`; between equal `q`, the one named more
///   specifically (`application/json` over `application/*` over `*/*`), then the one listed first.
///   A wildcard that covers both picks `application/json`, which every client can read.
/// - A range with a `charset` other than UTF-8 does not match: we only write UTF-8.
pub fn negotiate(accept: Option<&str>) -> Option<ResponseMedia> {
    let accept = match accept.map(str::trim) {
        None | Some("") => return Some(ResponseMedia::GraphqlResponseJson),
        Some(a) => a,
    };
    let ranges: Vec<MediaRange> = accept.split(',').filter_map(MediaRange::parse).collect();
    // `max_by` keeps the last of equal candidates: `application/json` wins a full tie.
    [ResponseMedia::GraphqlResponseJson, ResponseMedia::Json]
        .into_iter()
        .filter_map(|media| preference(&ranges, media).map(|p| (p, media)))
        .filter(|(p, _)| p.q > 0)
        .max_by(|(a, _), (b, _)| {
            a.q.cmp(&b.q)
                .then(a.specificity.cmp(&b.specificity))
                .then(b.position.cmp(&a.position))
        })
        .map(|(_, media)| media)
}

/// How much a client wants one media type, per the range of its `Accept` that names it most
/// specifically (RFC 9110, section 12.5.1).
#[derive(Debug, Clone, Copy)]
struct Preference {
    /// `q` in thousandths.
    q: u16,
    /// 2: `type/subtype`, 1: `type/*`, 0: `*/*`.
    specificity: u8,
    position: usize,
}

fn preference(ranges: &[MediaRange], media: ResponseMedia) -> Option<Preference> {
    let (ty, subtype) = media.essence();
    ranges
        .iter()
        .enumerate()
        .filter(|(_, r)| r.utf8)
        .filter_map(|(position, r)| {
            let specificity = match (r.ty.as_str(), r.subtype.as_str()) {
                (t, s) if t == ty && s == subtype => 2,
                (t, "*") if t == ty => 1,
                ("*", "*") => 0,
                _ => return None,
            };
            Some(Preference {
                q: r.q,
                specificity,
                position,
            })
        })
        .max_by(|a, b| a.specificity.cmp(&b.specificity).then(b.position.cmp(&a.position)))
}

/// One range of an `Accept` header.
#[derive(Debug)]
struct MediaRange {
    ty: String,
    subtype: String,
    q: u16,
    /// False when the range names a charset other than UTF-8.
    utf8: bool,
}

impl MediaRange {
    fn parse(text: &str) -> Option<MediaRange> {
        let mut parts = text.split(';');
        let (ty, subtype) = parts.next()?.trim().split_once('/')?;
        let (ty, subtype) = (ty.trim().to_ascii_lowercase(), subtype.trim().to_ascii_lowercase());
        if ty.is_empty() || subtype.is_empty() {
            return None;
        }
        let mut range = MediaRange {
            ty,
            subtype,
            q: 1000,
            utf8: true,
        };
        for param in parts {
            let Some((name, value)) = param.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches('"');
            match name.trim().to_ascii_lowercase().as_str() {
                "q" => range.q = parse_q(value)?,
                "charset" => range.utf8 = is_utf8(value),
                _ => {}
            }
        }
        Some(range)
    }
}

/// A `qvalue` (`0`, `0.5`, `1.000`) in thousandths; `None` when malformed.
fn parse_q(value: &str) -> Option<u16> {
    let q: f64 = value.parse().ok()?;
    (0.0..=1.0).contains(&q).then(|| (q * 1000.0).round() as u16)
}

fn is_utf8(charset: &str) -> bool {
    charset.eq_ignore_ascii_case("utf-8") || charset.eq_ignore_ascii_case("utf8")
}

/// Whether a POST body with this `Content-Type` is one we read: `application/json`, in UTF-8
/// (assumed when no charset is given).
pub fn is_json_request(content_type: &str) -> bool {
    let mut parts = content_type.split(';');
    let essence = parts.next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return false;
    }
    parts.all(|param| match param.split_once('=') {
        Some((name, value)) if name.trim().eq_ignore_ascii_case("charset") => is_utf8(value.trim().trim_matches('"')),
        _ => true,
    })
}

#[cfg(test)]
mod tests {
    use super::ResponseMedia::{GraphqlResponseJson as Gql, Json};
    use super::*;

    #[test]
    fn negotiates_the_response_media_type() {
        let cases: &[(Option<&str>, Option<ResponseMedia>)] = &[
            (None, Some(Gql)),
            (Some(""), Some(Gql)),
            (Some("application/graphql-response+json"), Some(Gql)),
            (Some("application/json"), Some(Json)),
            (Some("*/*"), Some(Json)),
            (Some("application/*"), Some(Json)),
            (Some("application/graphql-response+json, application/json"), Some(Gql)),
            (Some("application/json, application/graphql-response+json"), Some(Json)),
            (
                Some("application/graphql-response+json; charset=utf-8, application/json; charset=utf-8"),
                Some(Gql),
            ),
            (
                Some("application/json;q=0.9, application/graphql-response+json"),
                Some(Gql),
            ),
            (Some("application/graphql-response+json;q=0.1, */*"), Some(Json)),
            (Some("*/*;q=0.8, application/graphql-response+json"), Some(Gql)),
            (Some("application/json;q=0, */*"), Some(Gql)),
            (Some("text/html"), None),
            (Some("application/xml, text/*"), None),
            (Some("application/json; charset=iso-8859-1"), None),
            (Some("APPLICATION/JSON"), Some(Json)),
            (Some("application/json;q=nonsense"), None),
            (Some("garbage"), None),
        ];
        for (accept, want) in cases {
            assert_eq!(negotiate(*accept), *want, "Accept: {accept:?}");
        }
    }

    #[test]
    fn reads_json_request_bodies_only() {
        assert!(is_json_request("application/json"));
        assert!(is_json_request("application/json; charset=utf-8"));
        assert!(is_json_request("Application/JSON;charset=\"UTF-8\""));
        assert!(!is_json_request("application/json; charset=latin1"));
        assert!(!is_json_request("text/plain;charset=UTF-8"));
        assert!(!is_json_request("application/graphql"));
        assert!(!is_json_request("application/x-www-form-urlencoded"));
        assert!(!is_json_request(""));
    }
}
