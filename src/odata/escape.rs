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
//! into the filter either. Their formats (and string quoting) are the OData vocabulary shared with
//! the emulator ([`crate::vocabulary::literals`]); this module says what the gateway accepts.

use super::filter::Literal;
use crate::model::PropType;
use crate::vocabulary::literals::{self, DateTimeSyntax};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

/// A single-quoted OData string literal (`O'Bryan` becomes `'O''Bryan'`): the shared vocabulary's.
pub use crate::vocabulary::string_literal;

/// Escapes SQL Server `LIKE` wildcards for the value of `contains`, `startswith` or `endswith`
/// (`%` -> `[%]`, `_` -> `[_]`, `[` -> `[[]`): the shared vocabulary's. The result still needs
/// [`string_literal`].
pub use crate::vocabulary::literals::like_escape;

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
    literals::guid(inner).ok_or_else(|| format!("{value:?} is not a GUID (expected 8-4-4-4-12 hex digits)"))
}

/// A date-only literal, `YYYY-MM-DD`, checked against the calendar.
pub fn date(value: &str) -> Result<String, String> {
    literals::date(value)
        .map(literals::date_text)
        .ok_or_else(|| format!("{value:?} is not a date (expected YYYY-MM-DD)"))
}

/// A date-time literal in UTC, `YYYY-MM-DDTHH:MM:SSZ`. Accepts an ISO 8601 / RFC 3339 value
/// with `Z` or a `±HH:MM` offset (converted to UTC, because Dataverse stores UTC) and optional
/// fractional seconds (kept: dropping them would move a `gt` / `lt` boundary). The spelling is
/// RFC 3339's ([`DateTimeSyntax::Rfc3339`]: seconds and the offset are required).
pub fn datetime(value: &str) -> Result<String, String> {
    literals::datetime(value, DateTimeSyntax::Rfc3339)
        .map(literals::utc_text)
        .ok_or_else(|| format!("{value:?} is not a date-time (expected YYYY-MM-DDTHH:MM:SSZ)"))
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
        (PropType::Datetime, Literal::Date(s)) => date(s).map(|d| literals::midnight_utc(&d)),
        (PropType::OptionSet, Literal::Option(n)) => Ok(n.to_string()),
        (ty, lit) => Err(format!("{} does not fit a {ty:?} property", lit.kind())),
    }
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
    fn datetime_edges_leap_days_year_9999_offsets_and_fractions() {
        assert_eq!(datetime("2024-02-29T12:00:00Z").unwrap(), "2024-02-29T12:00:00Z");
        assert!(datetime("2023-02-29T12:00:00Z").is_err());
        assert_eq!(datetime("9999-12-31T23:59:59Z").unwrap(), "9999-12-31T23:59:59Z");
        assert!(datetime("9999-12-31T23:59:59-00:01").is_err());
        assert_eq!(datetime("2024-03-01T00:30:00+01:00").unwrap(), "2024-02-29T23:30:00Z");
        assert_eq!(datetime("2024-01-01t00:00:00z").unwrap(), "2024-01-01T00:00:00Z");
        // Seven digits, as .NET writes ticks; more than nine is refused rather than rounded.
        assert_eq!(
            datetime("2024-01-01T00:00:00.1234500Z").unwrap(),
            "2024-01-01T00:00:00.12345Z"
        );
        assert!(datetime("2024-01-01T00:00:00.1234567890Z").is_err());
        assert!(datetime("2024-01-01T00:00Z").is_err());
        assert_eq!(date("9999-12-31").unwrap(), "9999-12-31");
        assert!(date("0000-12-31").is_err());
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
