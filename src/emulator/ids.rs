//! Identifiers the way F&O virtual tables make them.
//!
//! A virtual-table GUID is synthesized by F&O: the first 4 bytes hold the data-entity ID, the last
//! 8 bytes the RecId of the root data source (`00000d6b-0000-0000-0000-005001000000`). The
//! emulator uses the entity's position in the model plus a per-table counter, so IDs look real and
//! never collide across tables.

use crate::model::Entity;

/// The data-entity ID the emulator gives an entity: stable, and in the range the docs show.
pub fn entity_ordinal(entity: &Entity) -> u32 {
    let index = crate::model::model()
        .entities
        .iter()
        .position(|e| e.logical_name == entity.logical_name)
        .expect("entity belongs to the model") as u32;
    0x0d60 + index
}

/// An F&O-style GUID from an entity ordinal and a RecId.
pub fn fno_guid(entity_ordinal: u32, rec_id: u64) -> String {
    let hi = (rec_id >> 48) as u16;
    let lo = rec_id & 0xffff_ffff_ffff;
    format!("{entity_ordinal:08x}-0000-0000-{hi:04x}-{lo:012x}")
}

/// Expands a number-sequence format such as `{company}-{n:06}` or `HR{n:09}`.
pub fn format_sequence(format: &str, company: &str, n: u64) -> String {
    let mut out = format.replace("{company}", &company.to_uppercase());
    if let Some(start) = out.find("{n") {
        let end = out[start..].find('}').map(|e| start + e + 1).unwrap_or(out.len());
        let width = out[start..end]
            .trim_start_matches("{n")
            .trim_start_matches(":0")
            .trim_end_matches('}')
            .parse::<usize>()
            .unwrap_or(0);
        out.replace_range(start..end, &format!("{n:0width$}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_has_the_documented_shape() {
        assert_eq!(fno_guid(0xd6b, 0x5001000000), "00000d6b-0000-0000-0000-005001000000");
    }

    #[test]
    fn sequences_expand() {
        assert_eq!(format_sequence("{company}-{n:06}", "usmf", 123), "USMF-000123");
        assert_eq!(format_sequence("HR{n:09}", "usmf", 518), "HR000000518");
        assert_eq!(format_sequence("{n:06}", "", 7), "000007");
    }
}
