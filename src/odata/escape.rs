//! Escaping and literal formatting: the only place where user data becomes OData text.
//!
//! Three layers, applied in this order by the callers:
//! 1. [`like_escape`] for values of `contains` / `startswith` / `endswith`, because Dataverse
//!    hands those to SQL Server `LIKE`, where `%`, `_` and `[` are wildcards (contract §2).
//! 2. [`string_literal`] (single quotes, `'` doubled) or [`in_values`] (JSON double-quoted array
//!    for `Microsoft.Dynamics.CRM.In`), so a value can never end its literal early.
//! 3. [`percent_encode_query_value`] on the whole option value when it is placed in the URL, so
//!    `&`, `+`, `#`, `%` and friends can never end or change the query option.
//!
//! Typed literals (GUIDs, dates, date-times, numbers) are validated and written bare, as OData
//! 4.0 wants them; a malformed one is refused rather than passed through, so it cannot carry text
//! into the filter either.

use super::filter::Literal;
use crate::model::PropType;
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

/// A single-quoted OData string literal: `O'Bryan` becomes `'O''Bryan'`.
pub fn string_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\'' {
            out.push('\'');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// Escapes SQL Server `LIKE` wildcards for the value of `contains`, `startswith` or `endswith`:
/// `%` -> `[%]`, `_` -> `[_]`, `[` -> `[[]`. The result still needs [`string_literal`].
pub fn like_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '%' => out.push_str("[%]"),
            '_' => out.push_str("[_]"),
            '[' => out.push_str("[[]"),
            _ => out.push(c),
        }
    }
    out
}

/// Characters encoded in a query option value. The brief's set (`% & + # / ? = ; space ' " [ ]`)
/// plus everything a URL may not carry raw (controls, `< > \ ^ ` { | }`); non-ASCII is always
/// encoded by `utf8_percent_encode`. Commas, parentheses, `:`, `$`, `@` and `*` stay readable:
/// they have no meaning to the query-string parser, so `$select=a,b` and dates stay legible.
const QUERY_VALUE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b'\'')
    .add(b'+')
    .add(b'/')
    .add(b';')
    .add(b'=')
    .add(b'?')
    .add(b'[')
    .add(b']')
    .add(b'<')
    .add(b'>')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// Percent-encodes a whole query option value (the text after `$filter=`).
pub fn percent_encode_query_value(value: &str) -> String {
    utf8_percent_encode(value, QUERY_VALUE).to_string()
}

/// Characters encoded in one path segment (a key or a function parameter in the path). Quotes,
/// parentheses and `=` stay raw: `GlobalOptionSetDefinitions(Name='x')` is path syntax.
const PATH_SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'?')
    .add(b'<')
    .add(b'>')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// Percent-encodes text placed inside one URL path segment.
pub fn percent_encode_path_segment(value: &str) -> String {
    utf8_percent_encode(value, PATH_SEGMENT).to_string()
}

/// The `PropertyValues` array of `Microsoft.Dynamics.CRM.In`: a JSON array of double-quoted
/// strings (`["O'Brian","a\"b"]`); Dataverse rejects single-quoted items there (contract §2).
pub fn in_values(values: &[&str]) -> String {
    serde_json::to_string(values).expect("a list of strings always serializes")
}

/// A GUID in the bare lower-case form OData 4.0 wants (`ENTITYSET(<guid>)`, `x eq <guid>`).
/// Accepts the 8-4-4-4-12 hex form, optionally in braces; refuses anything else.
pub fn guid(value: &str) -> Result<String, String> {
    let inner = value
        .strip_prefix('{')
        .and_then(|v| v.strip_suffix('}'))
        .unwrap_or(value);
    let ok = inner.len() == 36
        && inner.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    if ok {
        Ok(inner.to_ascii_lowercase())
    } else {
        Err(format!("{value:?} is not a GUID (expected 8-4-4-4-12 hex digits)"))
    }
}

/// A date-only literal, `YYYY-MM-DD`, checked against the calendar.
pub fn date(value: &str) -> Result<String, String> {
    parse_date(value)
        .map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}"))
        .ok_or_else(|| format!("{value:?} is not a date (expected YYYY-MM-DD)"))
}

/// A date-time literal in UTC, `YYYY-MM-DDTHH:MM:SSZ`. Accepts an ISO 8601 / RFC 3339 value
/// with `Z` or a `±HH:MM` offset (converted to UTC, because Dataverse stores UTC) and optional
/// fractional seconds (kept: dropping them would move a `gt` / `lt` boundary).
pub fn datetime(value: &str) -> Result<String, String> {
    parse_datetime(value).ok_or_else(|| format!("{value:?} is not a date-time (expected YYYY-MM-DDTHH:MM:SSZ)"))
}

/// A number literal; NaN and infinities have no OData spelling. Rust's `Display` for `f64`
/// never uses an exponent, which keeps the literal valid for `Edm.Decimal` as well.
pub fn float(value: f64) -> Result<String, String> {
    if value.is_finite() {
        Ok(format!("{value}"))
    } else {
        Err(format!("{value} is not a finite number"))
    }
}

/// The OData text of a literal for a property of type `ty`, or why it does not fit:
/// strings quoted, GUIDs bare and validated, `Edm.Int32` range-checked, numbers bare, dates
/// `YYYY-MM-DD`, date-times `YYYY-MM-DDTHH:MM:SSZ` (a date on a date-time property means its
/// midnight UTC), option sets as the bare integer given in `Literal::Option` (which integer to
/// send, documented or the environment's, is the caller's choice: see `filter`).
pub fn typed_literal(ty: PropType, lit: &Literal) -> Result<String, String> {
    match (ty, lit) {
        (PropType::String, Literal::String(s)) => Ok(string_literal(s)),
        (PropType::Guid, Literal::Guid(s) | Literal::String(s)) => guid(s),
        (PropType::Int, Literal::Int(n)) => i32::try_from(*n)
            .map(|n| n.to_string())
            .map_err(|_| format!("{n} does not fit a 32-bit integer")),
        (PropType::Decimal | PropType::Double, Literal::Int(n)) => Ok(n.to_string()),
        (PropType::Decimal | PropType::Double, Literal::Float(x)) => float(*x),
        (PropType::Date, Literal::Date(s)) => date(s),
        (PropType::Datetime, Literal::DateTime(s)) => datetime(s),
        (PropType::Datetime, Literal::Date(s)) => date(s).map(|d| format!("{d}T00:00:00Z")),
        (PropType::OptionSet, Literal::Option(n)) => Ok(n.to_string()),
        (ty, lit) => Err(format!("{} does not fit a {ty:?} property", lit.kind())),
    }
}

fn digits(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

fn parse_date(s: &str) -> Option<(i64, u32, u32)> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y = digits(&s[0..4])? as i64;
    let m = digits(&s[5..7])?;
    let d = digits(&s[8..10])?;
    if y == 0 || !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    Some((y, m, d))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn parse_datetime(s: &str) -> Option<String> {
    let (date_part, rest) = (s.get(..10)?, s.get(10..)?);
    let (y, mo, d) = parse_date(date_part)?;
    let rest = rest.strip_prefix(['T', 't'])?;
    let b = rest.as_bytes();
    if b.len() < 9 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let (h, mi, sec) = (digits(&rest[0..2])?, digits(&rest[3..5])?, digits(&rest[6..8])?);
    if h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let mut tail = &rest[8..];
    let mut fraction = "";
    if let Some(f) = tail.strip_prefix('.') {
        let n = f.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 || n > 9 {
            return None;
        }
        fraction = &f[..n];
        tail = &f[n..];
    }
    let offset_minutes: i64 = match tail {
        "Z" | "z" => 0,
        _ => {
            let sign = match tail.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let o = &tail[1..];
            if o.len() != 5 || o.as_bytes()[2] != b':' {
                return None;
            }
            let (oh, om) = (digits(&o[0..2])?, digits(&o[3..5])?);
            if oh > 23 || om > 59 {
                return None;
            }
            sign * (oh as i64 * 60 + om as i64)
        }
    };
    let minutes = days_from_civil(y, mo, d) * 1440 + h as i64 * 60 + mi as i64 - offset_minutes;
    let (y, mo, d) = civil_from_days(minutes.div_euclid(1440));
    if !(1..=9999).contains(&y) {
        return None;
    }
    let m = minutes.rem_euclid(1440);
    let fraction = fraction.trim_end_matches('0');
    let dot = if fraction.is_empty() { "" } else { "." };
    Some(format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{sec:02}{dot}{fraction}Z",
        m / 60,
        m % 60
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_literals_double_quotes() {
        assert_eq!(string_literal("O'Bryan"), "'O''Bryan'");
        assert_eq!(string_literal("''"), "''''''");
        assert_eq!(string_literal(""), "''");
    }

    #[test]
    fn like_wildcards_are_bracketed() {
        assert_eq!(like_escape("50%_[x]"), "50[%][_][[]x]");
        assert_eq!(string_literal(&like_escape("a'%")), "'a''[%]'");
    }

    #[test]
    fn query_values_encode_the_dangerous_set_and_keep_the_rest() {
        let v = percent_encode_query_value("a eq 'x&y+z#/?=;\"[]%' and b,c:d é");
        assert_eq!(
            v,
            "a%20eq%20%27x%26y%2Bz%23%2F%3F%3D%3B%22%5B%5D%25%27%20and%20b,c:d%20%C3%A9"
        );
        assert_eq!(percent_encode_query_value("a,b"), "a,b");
    }

    #[test]
    fn in_values_are_json_strings() {
        assert_eq!(in_values(&["O'Brian", "a\"b", "c\\"]), r#"["O'Brian","a\"b","c\\"]"#);
        assert_eq!(in_values(&[]), "[]");
    }

    #[test]
    fn guids_are_validated_and_lowercased() {
        let g = "00000D6B-0000-0000-0000-005001000000";
        assert_eq!(guid(g).unwrap(), g.to_lowercase());
        assert_eq!(guid(&format!("{{{g}}}")).unwrap(), g.to_lowercase());
        assert!(guid("00000d6b-0000-0000-0000-00500100000").is_err());
        assert!(guid("00000d6b-0000-0000-0000-00500100000) or (1 eq 1").is_err());
        assert!(guid("g0000d6b-0000-0000-0000-005001000000").is_err());
    }

    #[test]
    fn dates_follow_the_calendar() {
        assert_eq!(date("2024-02-29").unwrap(), "2024-02-29");
        assert!(date("2023-02-29").is_err());
        assert!(date("2023-13-01").is_err());
        assert!(date("2023-1-01").is_err());
        assert!(date("2023-01-01') or ('").is_err());
    }

    #[test]
    fn datetimes_become_utc() {
        assert_eq!(datetime("2024-01-01T00:00:00Z").unwrap(), "2024-01-01T00:00:00Z");
        assert_eq!(datetime("2024-01-01T01:30:00+02:00").unwrap(), "2023-12-31T23:30:00Z");
        assert_eq!(datetime("2024-02-28T23:00:00-01:00").unwrap(), "2024-02-29T00:00:00Z");
        assert_eq!(datetime("2024-01-01T00:00:00.500Z").unwrap(), "2024-01-01T00:00:00.5Z");
        assert_eq!(datetime("2024-01-01T00:00:00.000Z").unwrap(), "2024-01-01T00:00:00Z");
        assert!(datetime("2024-01-01").is_err());
        assert!(datetime("2024-01-01T24:00:00Z").is_err());
        assert!(datetime("2024-01-01T00:00:00").is_err());
        assert!(datetime("0001-01-01T00:00:00+01:00").is_err());
        assert!(datetime("2024-01-01T00:00:00Zx").is_err());
    }

    #[test]
    fn typed_literals_follow_the_property_type() {
        let g = "00000d6b-0000-0000-0000-005001000000";
        let cases = [
            (PropType::String, Literal::String("a'b".into()), Ok("'a''b'")),
            (PropType::Guid, Literal::Guid(g.to_uppercase()), Ok(g)),
            (PropType::Int, Literal::Int(-7), Ok("-7")),
            (PropType::Double, Literal::Float(0.25), Ok("0.25")),
            (PropType::Date, Literal::Date("2024-01-31".into()), Ok("2024-01-31")),
            (
                PropType::Datetime,
                Literal::Date("2024-01-31".into()),
                Ok("2024-01-31T00:00:00Z"),
            ),
            (PropType::OptionSet, Literal::Option(200000001), Ok("200000001")),
            (PropType::Int, Literal::Int(1 << 31), Err("32-bit")),
            (
                PropType::String,
                Literal::Int(1),
                Err("an integer does not fit a String property"),
            ),
            (
                PropType::Date,
                Literal::DateTime("2024-01-31T00:00:00Z".into()),
                Err("does not fit"),
            ),
        ];
        for (ty, lit, want) in cases {
            match (typed_literal(ty, &lit), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want),
                (Err(got), Err(want)) => assert!(got.contains(want), "{got}"),
                (got, want) => panic!("{ty:?} {lit:?}: {got:?} vs {want:?}"),
            }
        }
    }

    #[test]
    fn floats_are_bare_and_finite() {
        assert_eq!(float(1.5).unwrap(), "1.5");
        assert_eq!(float(1e21).unwrap(), "1000000000000000000000");
        assert!(float(f64::NAN).is_err());
        assert!(float(f64::INFINITY).is_err());
    }
}
