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
//! The grammar and the calendar are the shared vocabulary's ([`crate::vocabulary::literals`],
//! in its [`DateTimeSyntax::OData`] spelling); this module adds the emulator's stored forms.

use super::ast::Literal;
use crate::vocabulary::literals::{self, date_text, utc_seconds_text, DateTimeSyntax};

pub(crate) use crate::vocabulary::literals::guid_prefix;

/// `text` if it is exactly a GUID, lowercased.
pub(crate) fn parse_guid(text: &str) -> Option<String> {
    literals::guid(text)
}

/// `text` if it is exactly a valid date.
pub(crate) fn parse_date(text: &str) -> Option<String> {
    literals::date(text).map(date_text)
}

/// `text` if it is exactly a valid date-time, in its stored UTC form.
pub(crate) fn parse_datetime(text: &str) -> Option<String> {
    literals::datetime(text, DateTimeSyntax::OData).map(utc_seconds_text)
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
    match literals::scan(text, DateTimeSyntax::OData) {
        literals::Scan::NotTemporal => Scan::NotTemporal,
        literals::Scan::Invalid => Scan::Invalid,
        literals::Scan::Date(len, d) => Scan::Found(len, Literal::Date(date_text(d))),
        literals::Scan::DateTime(len, utc) => Scan::Found(len, Literal::DateTimeOffset(utc_seconds_text(utc))),
    }
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
}
