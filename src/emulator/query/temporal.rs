//! GUID, date and date-time literals: recognising them at the start of a text and normalising
//! them to the form the store keeps, so that comparing them is comparing TEXT.
//!
//! - GUIDs: the bare 8-4-4-4-12 hex form Dataverse writes, stored lowercase.
//! - Dates: `YYYY-MM-DD`, checked against the calendar.
//! - Date-times: `YYYY-MM-DDTHH:MM[:SS[.fff]][Z|±HH:MM]`, converted to UTC and stored as
//!   `YYYY-MM-DDTHH:MM:SSZ`. Fractional seconds are dropped: the stored form has none (Dataverse
//!   returns date-times to the second), and keeping them would break text ordering (`.` sorts
//!   before `Z`). A date-time without an offset is read as UTC.
//!
//! Everything works on bytes and only slices after checking that the bytes are ASCII, so no input
//! can split a UTF-8 character.

use super::ast::Literal;

/// Length of a hyphenated GUID.
const GUID_LEN: usize = 36;

/// The GUID at the start of `text`, lowercased.
pub(crate) fn guid_prefix(text: &str) -> Option<String> {
    let bytes = text.as_bytes().get(..GUID_LEN)?;
    let shaped = bytes.iter().enumerate().all(|(i, &c)| match i {
        8 | 13 | 18 | 23 => c == b'-',
        _ => c.is_ascii_hexdigit(),
    });
    // All 36 bytes are ASCII here, so slicing at 36 is on a character boundary.
    shaped.then(|| text[..GUID_LEN].to_ascii_lowercase())
}

/// `text` if it is exactly a GUID, lowercased.
pub(crate) fn parse_guid(text: &str) -> Option<String> {
    (text.len() == GUID_LEN).then(|| guid_prefix(text)).flatten()
}

/// `text` if it is exactly a valid date.
pub(crate) fn parse_date(text: &str) -> Option<String> {
    match scan_temporal(text) {
        Scan::Found(len, Literal::Date(d)) if len == text.len() => Some(d),
        _ => None,
    }
}

/// `text` if it is exactly a valid date-time, in its stored UTC form.
pub(crate) fn parse_datetime(text: &str) -> Option<String> {
    match scan_temporal(text) {
        Scan::Found(len, Literal::DateTimeOffset(d)) if len == text.len() => Some(d),
        _ => None,
    }
}

/// What [`scan_temporal`] found at the start of a text.
#[derive(Debug, PartialEq)]
pub(crate) enum Scan {
    /// The text doesn't start like a date (`dddd-dd-dd`).
    NotTemporal,
    /// It starts like a date but isn't a valid date or date-time.
    Invalid,
    /// A [`Literal::Date`] or [`Literal::DateTimeOffset`] (normalised) and its length in bytes.
    Found(usize, Literal),
}

/// Reads a date or date-time at the start of `text`.
pub(crate) fn scan_temporal(text: &str) -> Scan {
    let b = text.as_bytes();
    let shaped = b.len() >= 10 && b[4] == b'-' && b[7] == b'-';
    let (Some(y), Some(mo), Some(d)) = (digits(b, 0, 4), digits(b, 5, 2), digits(b, 8, 2)) else {
        return Scan::NotTemporal;
    };
    if !shaped {
        return Scan::NotTemporal;
    }
    if y == 0 || !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) {
        return Scan::Invalid;
    }
    if b.get(10) != Some(&b'T') {
        return Scan::Found(10, Literal::Date(text[..10].to_string()));
    }
    match scan_time(b) {
        Some((len, h, mi, s, offset)) => {
            let utc = days_from_civil(y, mo, d) * 86_400 + h * 3_600 + mi * 60 + s - offset * 60;
            let (day, secs) = (utc.div_euclid(86_400), utc.rem_euclid(86_400));
            let (y, mo, d) = civil_from_days(day);
            if !(1..=9999).contains(&y) {
                return Scan::Invalid;
            }
            let (h, mi, s) = (secs / 3_600, secs % 3_600 / 60, secs % 60);
            let canonical = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z");
            Scan::Found(len, Literal::DateTimeOffset(canonical))
        }
        None => Scan::Invalid,
    }
}

/// The time part after `YYYY-MM-DDT`: (end, hour, minute, second, offset in minutes east).
fn scan_time(b: &[u8]) -> Option<(usize, i64, i64, i64, i64)> {
    let h = digits(b, 11, 2)?;
    expect(b, 13, b':')?;
    let mi = digits(b, 14, 2)?;
    let (mut end, mut s) = (16, 0);
    if b.get(16) == Some(&b':') {
        s = digits(b, 17, 2)?;
        end = 19;
        if b.get(19) == Some(&b'.') {
            let fraction = b[20..].iter().take_while(|c| c.is_ascii_digit()).count();
            if fraction == 0 {
                return None;
            }
            end = 20 + fraction;
        }
    }
    let offset = match b.get(end) {
        Some(b'Z') => {
            end += 1;
            0
        }
        Some(&sign @ (b'+' | b'-')) => {
            let oh = digits(b, end + 1, 2)?;
            expect(b, end + 3, b':')?;
            let om = digits(b, end + 4, 2)?;
            if oh > 23 || om > 59 {
                return None;
            }
            end += 6;
            if sign == b'-' {
                -(oh * 60 + om)
            } else {
                oh * 60 + om
            }
        }
        _ => 0,
    };
    (h < 24 && mi < 60 && s < 60).then_some((end, h, mi, s, offset))
}

/// The number written by `len` ASCII digits at `at`.
fn digits(b: &[u8], at: usize, len: usize) -> Option<i64> {
    let part = b.get(at..at + len)?;
    part.iter()
        .try_fold(0i64, |n, &c| c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0')))
}

fn expect(b: &[u8], at: usize, c: u8) -> Option<()> {
    (b.get(at) == Some(&c)).then_some(())
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_converted_to_utc() {
        assert_eq!(
            parse_datetime("2021-01-01T00:30:00+01:00").as_deref(),
            Some("2020-12-31T23:30:00Z")
        );
        assert_eq!(
            parse_datetime("2020-02-28T23:00:00.123-02:00").as_deref(),
            Some("2020-02-29T01:00:00Z")
        );
        assert_eq!(
            parse_datetime("2021-01-04T10:20Z").as_deref(),
            Some("2021-01-04T10:20:00Z")
        );
        assert_eq!(
            parse_datetime("2021-01-04T10:20:30").as_deref(),
            Some("2021-01-04T10:20:30Z")
        );
    }

    #[test]
    fn invalid_calendar_values_are_rejected() {
        for bad in ["2021-02-29", "2021-13-01", "2021-00-10", "0000-01-01", "2021-04-31"] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
        assert_eq!(parse_date("2024-02-29").as_deref(), Some("2024-02-29"));
        for bad in ["2021-01-04T24:00:00Z", "2021-01-04T10:60Z", "2021-01-04T10:00:00.Z"] {
            assert_eq!(parse_datetime(bad), None, "{bad}");
        }
        assert_eq!(scan_temporal("2021-01-04T"), Scan::Invalid);
        assert_eq!(scan_temporal("9999-12-31T23:00:00-05:00"), Scan::Invalid);
        assert_eq!(scan_temporal("2021"), Scan::NotTemporal);
    }

    #[test]
    fn guids_are_lowercased_and_shape_checked() {
        assert_eq!(
            parse_guid("00000D6B-0000-0000-0000-005001000000").as_deref(),
            Some("00000d6b-0000-0000-0000-005001000000")
        );
        assert_eq!(parse_guid("00000d6b-0000-0000-0000-00500100000"), None);
        assert_eq!(parse_guid("00000d6b00000-0000-0000-005001000000"), None);
        assert_eq!(parse_guid("g0000d6b-0000-0000-0000-005001000000"), None);
    }

    #[test]
    fn civil_conversion_round_trips() {
        for day in [-719_162, -1, 0, 1, 11_016, 2_932_896] {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
    }
}
