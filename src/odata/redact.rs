//! Upstream URLs as they may be logged: the entity set, the path and the query's shape, with every
//! literal value replaced by `…`, because `$filter`s and keys carry record contents (names, party
//! numbers, e-mail addresses) that stay out of the logs.
//!
//! The URL is percent-decoded first (the gateway encodes option values: see [`super::escape`]),
//! then literals are recognised by their OData spelling, which is never a bare word: strings are
//! single-quoted (`'` doubled inside), `In` takes a JSON array, and numbers, GUIDs, dates and
//! date-times start with a digit or are a GUID. Identifiers, operators, functions, `true` /
//! `false` / `null` and the `PropertyName` of `In` stay. Free-text options (`$skiptoken`,
//! `$search`, ...) lose their whole value.
//! Whatever is not understood is dropped rather than kept: a string without its closing quote
//! hides the rest of the text.

use percent_encoding::percent_decode_str;

/// What replaces a literal.
const HIDDEN: &str = "…";

/// Options whose value is opaque or free text: hidden whole. Dataverse's skip tokens are paging
/// cookies that quote the last row's values.
const OPAQUE_OPTIONS: &[&str] = &["$skiptoken", "$deltatoken", "$search"];

/// Options whose value is a count, not a record's content: kept.
const COUNT_OPTIONS: &[&str] = &["$top", "$skip", "$count"];

/// `url` with its literal values hidden, decoded for reading: `…/mshr_hcmcandidatetohireentities?
/// $filter=mshr_firstname eq '…'&$top=10`.
pub fn redact_url(url: &str) -> String {
    let (before_fragment, _) = url.split_once('#').unwrap_or((url, ""));
    let (path, query) = match before_fragment.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (before_fragment, None),
    };
    // The origin is configuration, not data; `https:` and `127.0.0.1:8080` would read as literals.
    let origin_end = path
        .find("://")
        .map(|i| path[i + 3..].find('/').map_or(path.len(), |j| i + 3 + j))
        .unwrap_or(0);
    let mut out = path[..origin_end].to_string();
    out.push_str(&redact_expression(&decode(&path[origin_end..])));
    if let Some(query) = query {
        out.push('?');
        let options: Vec<String> = query.split('&').map(redact_option).collect();
        out.push_str(&options.join("&"));
    }
    out
}

fn decode(text: &str) -> String {
    percent_decode_str(text).decode_utf8_lossy().into_owned()
}

/// One `name=value` query option.
fn redact_option(option: &str) -> String {
    let (name, value) = match option.split_once('=') {
        Some((n, v)) => (decode(n), decode(v)),
        None => return redact_expression(&decode(option)),
    };
    let lower = name.to_ascii_lowercase();
    let value = if OPAQUE_OPTIONS.contains(&lower.as_str()) {
        HIDDEN.to_string()
    } else if COUNT_OPTIONS.contains(&lower.as_str()) && value.bytes().all(|b| b.is_ascii_alphanumeric()) {
        value
    } else {
        redact_expression(&value)
    };
    format!("{}={value}", redact_expression(&name))
}

/// An expression, a path or a list with its literals hidden.
pub fn redact_expression(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        match c {
            '\'' => {
                // A string literal: `''` inside is one quote, the literal goes on.
                loop {
                    match chars.next() {
                        None => break,
                        Some((_, '\'')) if chars.peek().map(|&(_, n)| n) == Some('\'') => {
                            chars.next();
                        }
                        Some((_, '\'')) => break,
                        Some(_) => {}
                    }
                }
                if out.ends_with("PropertyName=") {
                    // `In`'s property is a name, not data.
                    out.push_str(&text[start..chars.peek().map_or(text.len(), |&(i, _)| i)]);
                } else {
                    out.push('\'');
                    out.push_str(HIDDEN);
                    out.push('\'');
                }
            }
            '[' | '"' => {
                // `In(PropertyValues=["a","b"])`: the whole array, or a stray JSON string.
                let close = if c == '[' { ']' } else { '"' };
                let mut in_string = c == '"';
                loop {
                    match chars.next() {
                        None => break,
                        Some((_, '\\')) if in_string => {
                            chars.next();
                        }
                        Some((_, '"')) => {
                            in_string = !in_string;
                            if close == '"' {
                                break;
                            }
                        }
                        Some((_, ']')) if !in_string && close == ']' => break,
                        Some(_) => {}
                    }
                }
                out.push(c);
                out.push_str(HIDDEN);
                out.push(close);
            }
            c if is_word_char(c) => {
                let mut end = start + c.len_utf8();
                while let Some(&(i, n)) = chars.peek() {
                    if !is_word_char(n) {
                        break;
                    }
                    end = i + n.len_utf8();
                    chars.next();
                }
                let word = &text[start..end];
                if is_literal_word(word) {
                    out.push_str(HIDDEN);
                } else {
                    out.push_str(word);
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// Characters of identifiers (`mshr_FK_Person_id`, `Microsoft.Dynamics.CRM.In`, `$filter`) and
/// of bare literals (`-1.5`, `2024-01-31T08:00:00+01:00`, GUIDs).
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | ':' | '+' | '$' | '@')
}

/// A bare literal: a number, date, time or date-time (they start with a digit, or a sign and a
/// digit), or a GUID (which may start with a letter). Any word with a character an identifier
/// cannot have counts too.
fn is_literal_word(word: &str) -> bool {
    let unsigned = word.strip_prefix(['-', '+']).unwrap_or(word);
    let starts_with_digit = unsigned.starts_with(|c: char| c.is_ascii_digit());
    let identifier = word
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '$' | '@'));
    starts_with_digit || super::escape::guid(word).is_ok() || !identifier
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::odata::escape;

    const ROOT: &str = "https://org.crm.dynamics.com/api/data/v9.2/";

    /// A `$filter` URL as the gateway builds it: the value escaped and percent-encoded.
    fn filter_url(set: &str, filter: &str) -> String {
        format!(
            "{ROOT}{set}?$select=mshr_firstname&$filter={}&$top=25",
            escape::percent_encode_query_value(filter)
        )
    }

    fn hides(url: &str, secrets: &[&str]) -> String {
        let redacted = redact_url(url);
        for s in secrets {
            assert!(!redacted.contains(s), "`{s}` survives in {redacted}");
        }
        redacted
    }

    #[test]
    fn a_string_literal_with_doubled_quotes_is_hidden_whole() {
        let filter = format!(
            "mshr_lastname eq {} and mshr_firstname eq {}",
            escape::string_literal("O'Bryan"),
            escape::string_literal("it's 'quoted' & more")
        );
        let r = hides(
            &filter_url("mshr_hcmcandidatetohireentities", &filter),
            &["Bryan", "quoted", "more"],
        );
        assert_eq!(
            r,
            format!(
                "{ROOT}mshr_hcmcandidatetohireentities?$select=mshr_firstname\
                 &$filter=mshr_lastname eq '…' and mshr_firstname eq '…'&$top=25"
            )
        );
    }

    #[test]
    fn contains_keeps_the_function_and_hides_its_value() {
        let value = escape::string_literal(&escape::like_escape("Zeb_100%"));
        let r = hides(
            &filter_url(
                "mshr_hcmcandidatetohireentities",
                &format!("contains(mshr_firstname,{value})"),
            ),
            &["Zeb", "100"],
        );
        assert!(r.ends_with("$filter=contains(mshr_firstname,'…')&$top=25"), "{r}");
    }

    #[test]
    fn in_hides_the_whole_array() {
        let values = escape::in_values(&["PN-0001", "O'Brian", "a\"b],c"]);
        let filter = format!(
            "Microsoft.Dynamics.CRM.In(PropertyName='mshr_partynumber',PropertyValues={values}) and mshr_x eq 1"
        );
        let r = hides(
            &filter_url("mshr_dirpersonentities", &filter),
            &["PN-0001", "Brian", "a\\\"b", ",c"],
        );
        assert!(
            r.contains(
                "$filter=Microsoft.Dynamics.CRM.In(PropertyName='mshr_partynumber',PropertyValues=[…]) and mshr_x eq …&"
            ),
            "{r}"
        );
    }

    #[test]
    fn numbers_guids_dates_and_date_times_are_hidden() {
        let filter = "mshr_a eq 42 and mshr_b lt -1.5 and mshr_c eq 5f2b7e31-0000-4000-8000-00000000abcd \
                      and mshr_d ge 2024-01-31 and mshr_e lt 2024-01-31T08:00:00.5Z and mshr_f eq null \
                      and mshr_g eq true and mshr_h eq ab12cd34-0000-4000-8000-00000000abcd";
        let r = hides(
            &filter_url("mshr_x", filter),
            &["42", "1.5", "5f2b7e31", "2024", "08:00", "ab12cd34"],
        );
        assert!(
            r.contains(
                "$filter=mshr_a eq … and mshr_b lt … and mshr_c eq … and mshr_d ge … and mshr_e lt … \
                 and mshr_f eq null and mshr_g eq true and mshr_h eq …&"
            ),
            "{r}"
        );
    }

    #[test]
    fn key_segments_and_function_parameters_are_hidden() {
        let r = hides(
            &format!("{ROOT}mshr_hcmcandidatetohireentities(ab12cd34-0000-4000-8000-00000000abcd)/mshr_FK_Person_id"),
            &["ab12cd34"],
        );
        assert_eq!(r, format!("{ROOT}mshr_hcmcandidatetohireentities(…)/mshr_FK_Person_id"));
        let path = escape::percent_encode_path_segment(&format!(
            "mshr_dirpersonentities(mshr_partynumber={})",
            escape::string_literal("Zebulon Quxworth")
        ));
        let r = hides(&format!("{ROOT}{path}"), &["Zebulon", "Quxworth"]);
        assert_eq!(r, format!("{ROOT}mshr_dirpersonentities(mshr_partynumber='…')"));
    }

    #[test]
    fn skip_tokens_and_free_text_options_are_hidden_whole() {
        let cookie = "%3Ccookie%20pagenumber%3D%222%22%20pagingcookie%3D%22Zebulon%22%20%2F%3E";
        let r = hides(
            &format!("{ROOT}mshr_x?$select=a,b&$skiptoken={cookie}&$search=Zebulon&$top=5"),
            &["Zebulon", "cookie"],
        );
        assert_eq!(r, format!("{ROOT}mshr_x?$select=a,b&$skiptoken=…&$search=…&$top=5"));
    }

    #[test]
    fn nested_filters_in_expand_and_broken_literals_are_hidden() {
        let expand = escape::percent_encode_query_value("mshr_FK_Person_id($select=a;$filter=a eq 'Zebulon')");
        let r = hides(&format!("{ROOT}mshr_x?$expand={expand}"), &["Zebulon"]);
        assert!(
            r.ends_with("$expand=mshr_FK_Person_id($select=a;$filter=a eq '…')"),
            "{r}"
        );
        // An unterminated string hides everything after its quote.
        let r = hides(
            &format!("{ROOT}mshr_x?$filter=a eq 'Zebulon) or b eq ''c"),
            &["Zebulon", "or b"],
        );
        assert!(r.ends_with("$filter=a eq '…'"), "{r}");
        let r = hides("http://127.0.0.1:7070/api/data/v9.2/mshr_x(1)?$top=2", &["(1)"]);
        assert_eq!(r, "http://127.0.0.1:7070/api/data/v9.2/mshr_x(…)?$top=2");
        // Encoded separators inside a value do not split it.
        let r = hides(&filter_url("mshr_x", "a eq 'x&$top=1&y'"), &["$top=1", "y'"]);
        assert!(r.contains("$filter=a eq '…'&$top=25"), "{r}");
    }
}
