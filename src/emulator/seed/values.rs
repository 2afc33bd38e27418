//! Turning samples and derived facts into OData wire values: dates, placeholders, text forms.
//!
//! Dates are read and written with the shared literal formats ([`crate::vocabulary::literals`]);
//! moving a sample date by a row's jitter is day arithmetic on jiff dates.

use crate::model::{PropType, Property};
use crate::vocabulary::literals;
use jiff::civil::Date;
use jiff::Span;
use rand::Rng;
use serde_json::Value;

/// 1970-01-01, day 0 of the day numbers below.
const EPOCH: Date = Date::constant(1970, 1, 1);

/// Days since 1970-01-01 of a date.
pub(super) fn day_number(date: Date) -> i64 {
    // A day difference between two valid dates always fits a span of days.
    i64::from(date.since(EPOCH).expect("days between two valid dates").get_days())
}

/// The date of a day number, if it falls within jiff's calendar (years -9999 to 9999).
pub(super) fn date_of_day(day: i64) -> Option<Date> {
    EPOCH.checked_add(Span::new().try_days(day).ok()?).ok()
}

/// The day number of a `YYYY-MM-DD…` string (the time part, if any, is ignored).
pub(super) fn parse_day(s: &str) -> Option<i64> {
    literals::date(s.get(..10)?).map(day_number)
}

/// A day in the wire form of a date type: `Edm.Date` is `YYYY-MM-DD`, a date-time is midnight UTC;
/// `None` for a day out of the calendar's range.
pub(super) fn wire_day(ty: PropType, day: i64) -> Option<Value> {
    let date = literals::date_text(date_of_day(day)?);
    Some(Value::String(if ty == PropType::Datetime {
        literals::midnight_utc(&date)
    } else {
        date
    }))
}

/// A pinned (fixture) value in the model's wire form for its property: dates re-written for the
/// property's type (the docs print some `Edm.Date` values as date-times), GUIDs lower-case.
pub(super) fn normalize(p: &Property, v: Value) -> Value {
    match (&v, p.ty) {
        (Value::String(s), PropType::Date | PropType::Datetime) => {
            parse_day(s).and_then(|day| wire_day(p.ty, day)).unwrap_or(v)
        }
        (Value::String(s), PropType::Guid) => Value::String(s.to_lowercase()),
        _ => v,
    }
}

/// A sample value for a row: dates moved by the row's `jitter` days and written for the type.
pub(super) fn from_sample(p: &Property, sample: &Value, jitter: i64) -> Value {
    match (sample, p.ty) {
        (Value::String(s), PropType::Date | PropType::Datetime) => parse_day(s)
            .and_then(|day| wire_day(p.ty, day + jitter))
            .unwrap_or_else(|| sample.clone()),
        _ => sample.clone(),
    }
}

/// Whether a string sample holds placeholders to expand per row.
pub(super) fn is_template(s: &str) -> bool {
    s.contains('{') && s.contains('}')
}

/// Whether a template numbers its rows (its values must then differ from the fixture's).
pub(super) fn uses_counter(template: &str) -> bool {
    template.contains("{counter:")
}

/// The text of a value as it appears inside another string (primary fields, placeholders).
pub(super) fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Lower-case ASCII letters and digits only, for e-mail addresses and URLs (`Müller` → `mueller`).
pub(super) fn slug(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().flat_map(char::to_lowercase) {
        match c {
            'a'..='z' | '0'..='9' => out.push(c),
            'ä' => out.push_str("ae"),
            'ö' => out.push_str("oe"),
            'ü' => out.push_str("ue"),
            'ß' => out.push_str("ss"),
            'à'..='å' => out.push('a'),
            'è'..='ë' => out.push('e'),
            'ì'..='ï' => out.push('i'),
            'ò'..='õ' => out.push('o'),
            'ù'..='û' => out.push('u'),
            'ñ' => out.push('n'),
            'ç' => out.push('c'),
            _ => {}
        }
    }
    out
}

/// Expands `{name}`, `{name:slug}`, `{digits:N}` and `{counter:N}` (`counter`, zero-padded) in
/// a template. `resolve` gives the text of a named value (`None` when there is no such value,
/// which leaves the placeholder as it is). Runs of spaces left by empty values collapse, so
/// `{first} {middle} {last}` reads well.
pub(super) fn expand(
    template: &str,
    rng: &mut impl Rng,
    counter: u64,
    mut resolve: impl FnMut(&str) -> Option<String>,
) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}').map(|c| open + c) else {
            break;
        };
        out.push_str(&rest[..open]);
        let inner = &rest[open + 1..close];
        let (name, modifier) = inner.split_once(':').unwrap_or((inner, ""));
        let value = match (name, modifier) {
            ("digits", n) => n
                .parse::<usize>()
                .ok()
                .map(|n| (0..n).map(|_| char::from(b'0' + rng.random_range(0..10u8))).collect()),
            ("counter", n) => n.parse::<usize>().ok().map(|width| format!("{counter:0width$}")),
            (name, "slug") => resolve(name).map(|v| slug(&v)),
            (name, "") => resolve(name),
            _ => None,
        };
        match value {
            Some(v) => out.push_str(&v),
            None => out.push_str(&rest[open..=close]),
        }
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    if out.contains("  ") || out.starts_with(' ') || out.ends_with(' ') {
        out = out.split(' ').filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ");
    }
    out
}

/// A stable number from a name found in the model (used to give each out-of-model table its
/// own data-entity ID in synthetic GUIDs).
pub(super) fn name_number(s: &str) -> u32 {
    (crate::secret::sha256_u64(s.as_bytes()) >> 32) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, SeedableRng};

    #[test]
    fn civil_dates_round_trip() {
        assert_eq!(day_number(Date::constant(1970, 1, 1)), 0);
        assert_eq!(parse_day("2021-01-04T00:00:00Z"), Some(18_631));
        for day in [-800_000, -1, 0, 59, 60, 11_016, 18_631, 2_932_896] {
            assert_eq!(date_of_day(day).map(day_number), Some(day));
        }
        let feb28 = day_number(Date::constant(2024, 2, 28));
        assert_eq!(date_of_day(feb28 + 1), Some(Date::constant(2024, 2, 29)));
        assert_eq!(date_of_day(2_932_896), Some(Date::constant(9999, 12, 31)));
        assert_eq!(date_of_day(2_932_897), None);
        assert_eq!(parse_day("2023-02-29"), None);
    }

    #[test]
    fn days_are_written_per_type() {
        let day = parse_day("2021-03-18").unwrap();
        assert_eq!(wire_day(PropType::Date, day), Some(Value::from("2021-03-18")));
        assert_eq!(
            wire_day(PropType::Datetime, day),
            Some(Value::from("2021-03-18T00:00:00Z"))
        );
        assert_eq!(wire_day(PropType::Date, 2_932_897), None);
    }

    #[test]
    fn placeholders_expand() {
        let mut rng = StdRng::seed_from_u64(1);
        let names = |n: &str| match n {
            "first" => Some("Evelyn".to_string()),
            "middle" => Some(String::new()),
            "last" => Some("O'Brien Müller".to_string()),
            _ => None,
        };
        assert_eq!(
            expand("{first} {middle} {last}", &mut rng, 0, names),
            "Evelyn O'Brien Müller"
        );
        assert_eq!(
            expand("{first:slug}.{last:slug}@x.com", &mut rng, 0, names),
            "evelyn.obrienmueller@x.com"
        );
        let phone = expand("+1 425-555-{digits:4}", &mut rng, 0, names);
        assert!(
            phone.len() == 15 && phone[11..].bytes().all(|b| b.is_ascii_digit()),
            "{phone}"
        );
        assert_eq!(expand("000{counter:6}", &mut rng, 42, names), "000000042");
        assert_eq!(
            expand("{unknown} and {first", &mut rng, 0, names),
            "{unknown} and {first"
        );
        assert_eq!(expand("no placeholders", &mut rng, 0, names), "no placeholders");
    }

    #[test]
    fn slugs_are_ascii() {
        assert_eq!(slug("Jean-Luc Müßig"), "jeanlucmuessig");
        assert_eq!(slug("José Ñúñez"), "josenunez");
    }
}
