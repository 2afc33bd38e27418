//! SQL Server's `LIKE`, which Dataverse's string functions inherit: inside the value of
//! `contains`/`startswith`/`endswith`, `%` matches any run of characters, `_` one character,
//! `[abc]`/`[a-f]` one of a set, `[^abc]` one not in it, and `[%]`, `[_]`, `[[]` the character
//! itself (SQL Server has no backslash escape).
//!
//! Matching is case-insensitive over Unicode (SQL Server's default collations are), by comparing
//! simple lowercase mappings. An unclosed `[` is taken literally.
//!
//! SQLite's own `LIKE` knows neither brackets nor non-ASCII case, hence the scalar function
//! `ms_like(value, pattern)` that [`register_functions`] installs.

use rusqlite::functions::FunctionFlags;
use rusqlite::types::ValueRef;
use rusqlite::Connection;

/// `text` with `%`, `_` and `[` escaped (`[%]`, `[_]`, `[[]`), so that it matches itself only:
/// the shared vocabulary's rule, which the gateway applies to its `contains` values.
pub use crate::vocabulary::literals::like_escape as escape_like;

/// One element of a compiled pattern; each but `Any` matches exactly one character.
#[derive(Debug, Clone, PartialEq)]
enum Elem {
    /// `%`
    Any,
    /// `_`
    One,
    Char(char),
    /// `[...]` as inclusive ranges (a single character is a range of one).
    Set {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// A `LIKE` pattern compiled once and matched against many values.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pattern(Vec<Elem>);

impl Pattern {
    pub(crate) fn new(pattern: &str) -> Pattern {
        let chars: Vec<char> = pattern.chars().collect();
        let mut elems = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let elem = match chars[i] {
                '%' => Elem::Any,
                '_' => Elem::One,
                '[' => match chars[i + 1..].iter().position(|&c| c == ']') {
                    Some(len) if len > 0 => {
                        let set = parse_set(&chars[i + 1..i + 1 + len]);
                        i += len + 1;
                        set
                    }
                    _ => Elem::Char('['),
                },
                c => Elem::Char(c),
            };
            // Consecutive `%` are one `%`; collapsing them keeps the matcher's backtracking short.
            if !(elem == Elem::Any && elems.last() == Some(&Elem::Any)) {
                elems.push(elem);
            }
            i += 1;
        }
        Pattern(elems)
    }

    /// Whether `value` matches the whole pattern.
    ///
    /// Greedy matching with one backtrack point (the last `%`) is enough because every other
    /// element matches exactly one character; the cost is O(value × pattern) at worst.
    pub(crate) fn matches(&self, value: &str) -> bool {
        let value: Vec<char> = value.chars().collect();
        let pattern = &self.0;
        let (mut v, mut p) = (0, 0);
        let mut backtrack: Option<(usize, usize)> = None;
        while v < value.len() {
            match pattern.get(p) {
                Some(Elem::Any) => {
                    backtrack = Some((p, v));
                    p += 1;
                }
                Some(elem) if elem_matches(elem, value[v]) => {
                    p += 1;
                    v += 1;
                }
                _ => match backtrack {
                    // Let the last `%` swallow one more character and retry after it.
                    Some((star, from)) => {
                        backtrack = Some((star, from + 1));
                        p = star + 1;
                        v = from + 1;
                    }
                    None => return false,
                },
            }
        }
        pattern[p..].iter().all(|e| *e == Elem::Any)
    }
}

/// The inside of `[...]`: a leading `^` negates (unless it is all there is), `a-z` is a range and
/// a `-` at either end is literal.
fn parse_set(inner: &[char]) -> Elem {
    let (negated, body) = match inner {
        ['^', rest @ ..] if !rest.is_empty() => (true, rest),
        _ => (false, inner),
    };
    let mut ranges = Vec::new();
    let mut i = 0;
    while i < body.len() {
        if i + 2 < body.len() && body[i + 1] == '-' {
            ranges.push((body[i], body[i + 2]));
            i += 3;
        } else {
            ranges.push((body[i], body[i]));
            i += 1;
        }
    }
    Elem::Set { negated, ranges }
}

/// The simple (one-character) lowercase mapping of `c`, or `c` itself.
fn fold(c: char) -> char {
    let mut lower = c.to_lowercase();
    match (lower.next(), lower.next()) {
        (Some(l), None) => l,
        _ => c,
    }
}

/// The simple uppercase mapping of `c`, or `c` itself.
fn upper(c: char) -> char {
    let mut up = c.to_uppercase();
    match (up.next(), up.next()) {
        (Some(u), None) => u,
        _ => c,
    }
}

fn elem_matches(elem: &Elem, c: char) -> bool {
    match elem {
        Elem::Any | Elem::One => true,
        Elem::Char(p) => fold(*p) == fold(c),
        Elem::Set { negated, ranges } => {
            let hit = ranges
                .iter()
                .any(|&(lo, hi)| [c, fold(c), upper(c)].iter().any(|x| (lo..=hi).contains(x)));
            hit != *negated
        }
    }
}

/// Whether `value` matches the SQL Server `LIKE` `pattern`, case-insensitively.
pub fn like_matches(value: &str, pattern: &str) -> bool {
    Pattern::new(pattern).matches(value)
}

/// The text of a SQLite value, for matching; NULL and BLOBs have none.
fn text_of(value: ValueRef<'_>) -> Option<String> {
    match value {
        ValueRef::Text(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(r) => Some(r.to_string()),
        ValueRef::Null | ValueRef::Blob(_) => None,
    }
}

/// Registers `ms_like(value, pattern)` on `conn`: 1 when `value` matches the SQL Server `LIKE`
/// `pattern` case-insensitively, 0 otherwise, and 0 when either is NULL (Dataverse returns a row
/// only when the filter is true).
pub fn register_functions(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_scalar_function(
        "ms_like",
        2,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            // The pattern is a bound parameter, constant for the statement: compile it once.
            let pattern = ctx.get_or_create_aux(1, |raw| -> rusqlite::Result<Option<Pattern>> {
                Ok(text_of(raw).map(|p| Pattern::new(&p)))
            })?;
            let value = text_of(ctx.get_raw(0));
            Ok(match (value, pattern.as_ref()) {
                (Some(value), Some(pattern)) => pattern.matches(&value),
                _ => false,
            })
        },
    )
}
