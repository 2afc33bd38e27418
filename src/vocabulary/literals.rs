//! Literal formats: string quoting, `LIKE` wildcard escaping, GUIDs, `Edm.Date` and
//! `Edm.DateTimeOffset`.
//!
//! The grammar (which spellings are literals) is written here, on bytes; the calendar (month
//! lengths, leap years, moving a date-time by its offset, printing) is jiff's. Every reader checks
//! that the bytes it slices are ASCII first, so no input can split a UTF-8 character.
//!
//! Date-times are read in one of two spellings ([`DateTimeSyntax`]) and always end in UTC, because
//! Dataverse stores UTC. The year must stay within `0001..=9999` after the offset is applied, as
//! for `Edm.Date` itself (jiff's civil types reach year 9999, so `9999-12-31T23:59:59Z` works).

use jiff::civil::{Date, DateTime};
use jiff::SignedDuration;

/// Length of a hyphenated GUID (8-4-4-4-12 hex digits).
pub const GUID_LEN: usize = 36;

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

/// Escapes SQL Server `LIKE` wildcards in the value of `contains`, `startswith` or `endswith`,
/// which Dataverse hands to `LIKE` (contract §2): `%` -> `[%]`, `_` -> `[_]`, `[` -> `[[]`, so
/// that the value matches itself only. The result still needs [`string_literal`].
pub fn like_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '%' | '_' | '[' => {
                out.push('[');
                out.push(c);
                out.push(']');
            }
            c => out.push(c),
        }
    }
    out
}

/// The GUID at the start of `text`, lowercased (the bare form OData 4.0 and Dataverse write).
pub fn guid_prefix(text: &str) -> Option<String> {
    let bytes = text.as_bytes().get(..GUID_LEN)?;
    let shaped = bytes.iter().enumerate().all(|(i, &c)| match i {
        8 | 13 | 18 | 23 => c == b'-',
        _ => c.is_ascii_hexdigit(),
    });
    // All 36 bytes are ASCII here, so slicing at 36 is on a character boundary.
    shaped.then(|| text[..GUID_LEN].to_ascii_lowercase())
}

/// `text` if it is exactly a GUID, lowercased.
pub fn guid(text: &str) -> Option<String> {
    (text.len() == GUID_LEN).then(|| guid_prefix(text)).flatten()
}

/// How a date-time literal may be spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateTimeSyntax {
    /// OData's `dateTimeOffsetValue` as Dataverse reads it in a URL:
    /// `YYYY-MM-DDTHH:MM[:SS[.f…]][Z|±HH:MM]`, any number of fraction digits, upper-case `T` and
    /// `Z`; a value without an offset is read as UTC.
    OData,
    /// RFC 3339 `date-time`: `YYYY-MM-DD(T|t)HH:MM:SS[.f]` with one to nine fraction digits and
    /// a required `Z`, `z` or `±HH:MM`.
    Rfc3339,
}

/// What [`scan`] found at the start of a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// The text does not start like a date (`dddd-dd-dd`).
    NotTemporal,
    /// It starts like a date but is not a valid date or date-time.
    Invalid,
    /// A calendar date (`YYYY-MM-DD`, not followed by a time) and its length in bytes.
    Date(usize, Date),
    /// A date-time, converted to UTC, and its length in bytes.
    DateTime(usize, DateTime),
}

/// Reads a date or date-time at the start of `text`.
pub fn scan(text: &str, syntax: DateTimeSyntax) -> Scan {
    let b = text.as_bytes();
    let Some(date) = scan_date(b) else {
        return Scan::NotTemporal;
    };
    let Some(date) = date else {
        return Scan::Invalid;
    };
    let separator = match b.get(10) {
        Some(b'T') => true,
        Some(b't') => syntax == DateTimeSyntax::Rfc3339,
        _ => false,
    };
    if !separator {
        return Scan::Date(10, date);
    }
    match scan_clock(b, syntax).and_then(|clock| clock.utc(date)) {
        Some((len, utc)) => Scan::DateTime(len, utc),
        None => Scan::Invalid,
    }
}

/// `text` if it is exactly a valid `YYYY-MM-DD` date.
pub fn date(text: &str) -> Option<Date> {
    match scan(text, DateTimeSyntax::OData) {
        Scan::Date(len, d) if len == text.len() => Some(d),
        _ => None,
    }
}

/// `text` if it is exactly a valid date-time in `syntax`, converted to UTC.
pub fn datetime(text: &str, syntax: DateTimeSyntax) -> Option<DateTime> {
    match scan(text, syntax) {
        Scan::DateTime(len, d) if len == text.len() => Some(d),
        _ => None,
    }
}

/// A date as `Edm.Date` text: `YYYY-MM-DD`.
pub fn date_text(date: Date) -> String {
    date.to_string()
}

/// A UTC date-time as `Edm.DateTimeOffset` text, `YYYY-MM-DDTHH:MM:SS[.f]Z`: fractional seconds
/// kept with their trailing zeros dropped (`.500` is `.5`), none written when they are zero.
pub fn utc_text(utc: DateTime) -> String {
    format!("{utc}Z")
}

/// A UTC date-time to the second, `YYYY-MM-DDTHH:MM:SSZ`: fractional seconds are dropped.
pub fn utc_seconds_text(utc: DateTime) -> String {
    format!("{utc:.0}Z")
}

/// The date-time of a date's midnight UTC, as a date given to a date-time property means.
pub fn midnight_utc(date: &str) -> String {
    format!("{date}T00:00:00Z")
}

/// `YYYY-MM-DD` at the start of `b`: `None` when the shape is not there, `Some(None)` when it
/// is but names no day of the calendar (year 0, month 13, February 30, …).
fn scan_date(b: &[u8]) -> Option<Option<Date>> {
    let (y, m, d) = (number(b, 0, 4)?, number(b, 5, 2)?, number(b, 8, 2)?);
    if b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    // Four digits fit an i16, two an i8.
    Some((y > 0).then(|| Date::new(y as i16, m as i8, d as i8).ok()).flatten())
}

/// The time of day after `YYYY-MM-DDT`, as written.
struct Clock {
    /// Where the literal ends.
    end: usize,
    hour: i8,
    minute: i8,
    second: i8,
    nanosecond: i32,
    /// Minutes east of UTC.
    offset: i32,
}

impl Clock {
    /// The literal's end and its instant in UTC, if it is a valid time within years 1 to 9999.
    fn utc(&self, date: Date) -> Option<(usize, DateTime)> {
        let local = DateTime::new(
            date.year(),
            date.month(),
            date.day(),
            self.hour,
            self.minute,
            self.second,
            self.nanosecond,
        )
        .ok()?;
        let utc = local
            .checked_sub(SignedDuration::from_mins(i64::from(self.offset)))
            .ok()?;
        (utc.year() >= 1).then_some((self.end, utc))
    }
}

/// `HH:MM[:SS[.f…]]` and the offset, from byte 11.
fn scan_clock(b: &[u8], syntax: DateTimeSyntax) -> Option<Clock> {
    let hour = number(b, 11, 2)?;
    expect(b, 13, b':')?;
    let minute = number(b, 14, 2)?;
    let (end, second, nanosecond) = scan_seconds(b, syntax)?;
    let (end, offset) = scan_offset(b, end, syntax)?;
    Some(Clock {
        end,
        hour: hour as i8,
        minute: minute as i8,
        second: second as i8,
        nanosecond,
        offset,
    })
}

/// `:SS[.f…]` from byte 16, when written: (end, second, nanosecond).
fn scan_seconds(b: &[u8], syntax: DateTimeSyntax) -> Option<(usize, i64, i32)> {
    if b.get(16) != Some(&b':') {
        return (syntax == DateTimeSyntax::OData).then_some((16, 0, 0));
    }
    let second = number(b, 17, 2)?;
    if b.get(19) != Some(&b'.') {
        return Some((19, second, 0));
    }
    let digits = b[20..].iter().take_while(|c| c.is_ascii_digit()).count();
    let too_long = syntax == DateTimeSyntax::Rfc3339 && digits > 9;
    if digits == 0 || too_long {
        return None;
    }
    // Digits past the ninth are below a nanosecond: they are read and dropped.
    let nanosecond = b[20..20 + digits.min(9)]
        .iter()
        .chain(std::iter::repeat(&b'0'))
        .take(9)
        .fold(0i32, |n, &c| n * 10 + i32::from(c - b'0'));
    Some((20 + digits, second, nanosecond))
}

/// `Z` or `±HH:MM` at `end`, or nothing where the syntax allows it: (end, minutes east).
fn scan_offset(b: &[u8], end: usize, syntax: DateTimeSyntax) -> Option<(usize, i32)> {
    match b.get(end) {
        Some(b'Z') => Some((end + 1, 0)),
        Some(b'z') if syntax == DateTimeSyntax::Rfc3339 => Some((end + 1, 0)),
        Some(&sign @ (b'+' | b'-')) => {
            let hours = number(b, end + 1, 2)?;
            expect(b, end + 3, b':')?;
            let minutes = number(b, end + 4, 2)?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let east = (hours * 60 + minutes) as i32;
            Some((end + 6, if sign == b'-' { -east } else { east }))
        }
        _ => (syntax == DateTimeSyntax::OData).then_some((end, 0)),
    }
}

/// The number written by `len` ASCII digits at `at`.
fn number(b: &[u8], at: usize, len: usize) -> Option<i64> {
    let part = b.get(at..at + len)?;
    part.iter()
        .try_fold(0i64, |n, &c| c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0')))
}

fn expect(b: &[u8], at: usize, c: u8) -> Option<()> {
    (b.get(at) == Some(&c)).then_some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use DateTimeSyntax::{OData, Rfc3339};

    fn odata(text: &str) -> Option<String> {
        datetime(text, OData).map(utc_seconds_text)
    }

    fn rfc3339(text: &str) -> Option<String> {
        datetime(text, Rfc3339).map(utc_text)
    }

    #[test]
    fn leap_days_follow_the_gregorian_rules() {
        for good in ["2024-02-29", "2000-02-29", "1600-02-29", "0004-02-29"] {
            assert_eq!(date(good).map(date_text).as_deref(), Some(good));
        }
        for bad in ["2023-02-29", "1900-02-29", "2100-02-29", "2024-02-30", "2024-04-31"] {
            assert_eq!(date(bad), None, "{bad}");
        }
        // Crossing into a leap day by the offset.
        assert_eq!(
            odata("2024-02-28T23:30:00-01:00").as_deref(),
            Some("2024-02-29T00:30:00Z")
        );
        assert_eq!(
            odata("2023-02-28T23:30:00-01:00").as_deref(),
            Some("2023-03-01T00:30:00Z")
        );
    }

    #[test]
    fn years_stay_between_1_and_9999() {
        assert_eq!(date("0000-01-01"), None);
        assert_eq!(date("9999-12-31").map(date_text).as_deref(), Some("9999-12-31"));
        assert_eq!(odata("9999-12-31T23:59:59Z").as_deref(), Some("9999-12-31T23:59:59Z"));
        assert_eq!(
            rfc3339("9999-12-31T23:59:59.999999999Z").as_deref(),
            Some("9999-12-31T23:59:59.999999999Z")
        );
        assert_eq!(odata("9999-12-31T23:00:00-01:00"), None);
        assert_eq!(
            odata("9999-12-31T23:00:00+01:00").as_deref(),
            Some("9999-12-31T22:00:00Z")
        );
        assert_eq!(odata("0001-01-01T00:30:00+01:00"), None);
        assert_eq!(
            odata("0001-01-01T00:30:00-01:00").as_deref(),
            Some("0001-01-01T01:30:00Z")
        );
    }

    #[test]
    fn offsets_move_to_utc() {
        assert_eq!(
            odata("2021-01-01T00:30:00+01:00").as_deref(),
            Some("2020-12-31T23:30:00Z")
        );
        assert_eq!(
            odata("2021-06-30T20:00:00-05:30").as_deref(),
            Some("2021-07-01T01:30:00Z")
        );
        assert_eq!(
            odata("2021-01-01T00:00:00+23:59").as_deref(),
            Some("2020-12-31T00:01:00Z")
        );
        assert_eq!(
            odata("2021-01-01T00:00:00-00:00").as_deref(),
            Some("2021-01-01T00:00:00Z")
        );
        for bad in [
            "2021-01-01T00:00:00+24:00",
            "2021-01-01T00:00:00+01:60",
            "2021-01-01T00:00:00+0100",
        ] {
            assert_eq!(odata(bad), None, "{bad}");
            assert_eq!(rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn fractional_seconds_as_dataverse_and_dotnet_write_them() {
        // Dataverse answers to the second; .NET clients send up to seven digits (ticks).
        assert_eq!(
            odata("2021-03-18T10:15:30.1234567Z").as_deref(),
            Some("2021-03-18T10:15:30Z")
        );
        assert_eq!(
            rfc3339("2021-03-18T10:15:30.1234567Z").as_deref(),
            Some("2021-03-18T10:15:30.1234567Z")
        );
        assert_eq!(
            rfc3339("2021-03-18T10:15:30.000Z").as_deref(),
            Some("2021-03-18T10:15:30Z")
        );
        assert_eq!(
            rfc3339("2021-03-18T10:15:30.120Z").as_deref(),
            Some("2021-03-18T10:15:30.12Z")
        );
        // OData reads any number of digits; RFC 3339 here stops at nanoseconds.
        assert_eq!(
            odata("2021-03-18T10:15:30.1234567891Z").as_deref(),
            Some("2021-03-18T10:15:30Z")
        );
        assert_eq!(rfc3339("2021-03-18T10:15:30.1234567891Z"), None);
        assert_eq!(odata("2021-03-18T10:15:30.Z"), None);
    }

    #[test]
    fn the_two_spellings_differ_where_documented() {
        assert_eq!(odata("2021-01-04T10:20Z").as_deref(), Some("2021-01-04T10:20:00Z"));
        assert_eq!(rfc3339("2021-01-04T10:20Z"), None);
        assert_eq!(odata("2021-01-04T10:20:30").as_deref(), Some("2021-01-04T10:20:30Z"));
        assert_eq!(rfc3339("2021-01-04T10:20:30"), None);
        assert_eq!(rfc3339("2021-01-04t10:20:30z").as_deref(), Some("2021-01-04T10:20:30Z"));
        assert_eq!(
            scan("2021-01-04t10:20:30Z", OData),
            Scan::Date(10, date("2021-01-04").unwrap())
        );
        assert_eq!(odata("2021-01-04T10:20:30z"), None);
    }

    #[test]
    fn scanning_reports_the_length_read() {
        let text = "2021-01-04T10:20:30Z) and x eq 1";
        assert!(matches!(scan(text, OData), Scan::DateTime(20, _)));
        assert!(matches!(scan("2021-01-04 rest", OData), Scan::Date(10, _)));
        assert_eq!(scan("2021-01-04T", OData), Scan::Invalid);
        assert_eq!(scan("2021-13-04", OData), Scan::Invalid);
        assert_eq!(scan("2021", OData), Scan::NotTemporal);
        assert_eq!(scan("2021/01/04", OData), Scan::NotTemporal);
        assert_eq!(scan("２０２１-01-04", OData), Scan::NotTemporal);
        assert_eq!(midnight_utc("2021-01-04"), "2021-01-04T00:00:00Z");
    }

    #[test]
    fn guids_and_strings() {
        let g = "00000D6B-0000-0000-0000-005001000000";
        assert_eq!(guid(g), Some(g.to_ascii_lowercase()));
        assert_eq!(guid_prefix(&format!("{g}) or true")), Some(g.to_ascii_lowercase()));
        assert_eq!(guid(&g[..35]), None);
        assert_eq!(guid("00000d6b-0000-0000-0000-0050010000é"), None);
        assert_eq!(string_literal("O'Bryan"), "'O''Bryan'");
        assert_eq!(string_literal(""), "''");
        assert_eq!(like_escape("50%_[x]é"), "50[%][_][[]x]é");
    }
}
