//! `vocabulary`: the OData that both sides of the wire speak, written once. The gateway's
//! upstream client (`odata`) writes it and the emulator (`emulator::query`) reads it; it is
//! neither's, so it lives here and depends on nothing of the crate.
//!
//! - [`operators`]: the comparison operators ([`CmpOp`]) and string functions ([`StrFunc`]) of
//!   `$filter`, with their keywords.
//! - [`literals`]: string quoting, `LIKE` wildcard escaping, GUIDs, `Edm.Date` and
//!   `Edm.DateTimeOffset` literals: the grammar, and the calendar through jiff (leap years,
//!   offsets to UTC, years 1 to 9999).
//! - [`MAX_EXPANDS`]: Dataverse's limit on `$expand` options in one query.

pub mod literals;
pub mod operators;

pub use literals::{string_literal, DateTimeSyntax};
pub use operators::{CmpOp, StrFunc};

/// The most `$expand` options one query may have, nested ones included (Dataverse's limit,
/// contract §2).
pub const MAX_EXPANDS: usize = 15;
