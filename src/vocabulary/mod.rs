//! `vocabulary`: the OData that both sides of the wire speak, written once. The gateway's
//! upstream client (`odata`) writes it and the emulator (`emulator::query`) reads it; it is
//! neither's, so it lives here and depends on nothing of the crate.
//!
//! - [`literals`]: string quoting, GUIDs, `Edm.Date` and `Edm.DateTimeOffset` literals: the
//!   grammar, and the calendar through jiff (leap years, offsets to UTC, years 1 to 9999).

pub mod literals;

pub use literals::{string_literal, DateTimeSyntax};
