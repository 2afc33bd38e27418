//! `$orderby`, `$select` and `$expand`, validated against an entity of the model.
//!
//! `$expand` follows Dataverse's documented rules: at most [`MAX_EXPANDS`] expansions in a query,
//! nested ones included; inside an expansion only `$select`, `$filter`, `$orderby`, `$top` and
//! `$expand` (no `$skip`, `$count`, `$search`, `$levels`); and `$top`/`$orderby` only on a
//! collection-valued navigation, and only when the query has no nested `$expand`. Positions in
//! messages count from the start of the text being parsed: a nested option's text is parsed on
//! its own, as OData Lib does.

use super::ast::Expr;
use super::filter::parse_filter;
use super::lexer::{position, syntax_error, tokenize, Tok};
use super::sql::compile_filter;
use super::QueryError;
use crate::model::{model, Cardinality, Entity, Relation};

pub use crate::vocabulary::MAX_EXPANDS;

/// One `$orderby` term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderBy {
    pub property: String,
    pub descending: bool,
}

/// One `$expand` item with its nested options, validated against the navigation's target.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpandItem {
    /// The navigation property, such as `mshr_FK_Person_id`.
    pub navigation: String,
    pub select: Option<Vec<String>>,
    pub filter: Option<Expr>,
    pub orderby: Vec<OrderBy>,
    pub top: Option<u32>,
    pub expand: Vec<ExpandItem>,
}

/// Parses `$orderby`: `prop [asc|desc]`, comma-separated.
pub fn parse_orderby(input: &str, entity: &Entity) -> Result<Vec<OrderBy>, QueryError> {
    let tokens = tokenize(input)?;
    let mut terms = Vec::new();
    let mut i = 0;
    loop {
        let Tok::Ident(name) = &tokens[i].tok else {
            return Err(syntax_error(input, tokens[i].pos));
        };
        i += 1;
        if tokens[i].tok == Tok::Slash {
            return Err(QueryError::new(format!(
                "Ordering by a navigation path ('{name}/...') is not supported by the emulator in '{input}'."
            )));
        }
        entity
            .property(name)
            .ok_or_else(|| QueryError::unknown_property(name, entity))?;
        let mut descending = false;
        if let Tok::Ident(dir) = &tokens[i].tok {
            match dir.as_str() {
                "asc" => {}
                "desc" => descending = true,
                _ => return Err(syntax_error(input, tokens[i].pos)),
            }
            i += 1;
        }
        terms.push(OrderBy {
            property: name.clone(),
            descending,
        });
        match tokens[i].tok {
            Tok::Comma => i += 1,
            Tok::End => return Ok(terms),
            _ => return Err(syntax_error(input, tokens[i].pos)),
        }
    }
}

/// Parses `$select`: property names, comma-separated; duplicates are dropped.
pub fn parse_select(input: &str, entity: &Entity) -> Result<Vec<String>, QueryError> {
    let mut names: Vec<String> = Vec::new();
    let mut offset = 0;
    for piece in input.split(',') {
        let name = piece.trim();
        if name.is_empty() {
            return Err(syntax_error(input, offset));
        }
        if entity.property(name).is_none() {
            return Err(match entity.navigation(name) {
                Some(_) => QueryError::new(format!(
                    "The navigation property '{name}' can't be used in $select; use $expand to include related rows."
                )),
                None => QueryError::unknown_property(name, entity),
            });
        }
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
        offset += piece.len() + 1;
    }
    Ok(names)
}

/// Parses `$expand`: `nav` or `nav($select=..;$filter=..;$orderby=..;$top=n;$expand=..)`,
/// comma-separated, with every navigation and nested option checked against its entity.
pub fn parse_expand(input: &str, entity: &Entity) -> Result<Vec<ExpandItem>, QueryError> {
    let mut count = 0;
    let items = expand_list(input, entity, &mut count)?;
    let nested = items.iter().any(|item| !item.expand.is_empty());
    check_collection_options(&items, entity, nested)?;
    Ok(items)
}

/// Dataverse allows `$top` and `$orderby` inside an expansion only on a collection, and only in
/// a query without nested `$expand`.
fn check_collection_options(items: &[ExpandItem], entity: &Entity, nested: bool) -> Result<(), QueryError> {
    for item in items {
        let (relation, target) = navigation(entity, &item.navigation)?;
        let ordered = item.top.is_some() || !item.orderby.is_empty();
        if ordered && (relation.kind == Cardinality::One || nested) {
            return Err(QueryError::new(
                "Only $select and $filter clause can be provided while doing $expand on many-to-one relationship or nested one-to-many relationship.",
            ));
        }
        check_collection_options(&item.expand, target, nested)?;
    }
    Ok(())
}

/// The relation behind a navigation property and its target entity.
fn navigation<'e>(entity: &'e Entity, name: &str) -> Result<(&'e Relation, &'static Entity), QueryError> {
    let Some(relation) = entity.navigation(name) else {
        return Err(match entity.property(name) {
            Some(_) => QueryError::new(format!(
                "Property '{name}' on type 'Microsoft.Dynamics.CRM.{}' is not a navigation property or complex property. Only navigation properties can be expanded.",
                entity.logical_name
            )),
            None => QueryError::unknown_property(name, entity),
        });
    };
    let target = model().by_logical_name(&relation.target).ok_or_else(|| {
        QueryError::new(format!(
            "The navigation property '{name}' leads to '{}', which the emulator doesn't have.",
            relation.target
        ))
    })?;
    Ok((relation, target))
}

fn expand_list(text: &str, entity: &Entity, count: &mut usize) -> Result<Vec<ExpandItem>, QueryError> {
    let marks = structure(text)?;
    split(text, &marks, b',')
        .into_iter()
        .map(|(offset, piece)| expand_item(text, offset, piece, &marks, entity, count))
        .collect()
}

/// One item of an `$expand` list: `piece` starts at byte `offset` of `text`.
fn expand_item(
    text: &str,
    offset: usize,
    piece: &str,
    marks: &[Mark],
    entity: &Entity,
    count: &mut usize,
) -> Result<ExpandItem, QueryError> {
    let start = offset + (piece.len() - piece.trim_start().len());
    let item = piece.trim();
    if item.is_empty() {
        return Err(syntax_error(text, start));
    }
    // Counted before any nested list is parsed, so the limit also bounds the recursion.
    *count += 1;
    if *count > MAX_EXPANDS {
        return Err(QueryError::new(format!(
            "Number of link entities in query exceeded maximum limit: a query can have at most {MAX_EXPANDS} $expand options, nested ones included."
        )));
    }
    let end = start + item.len();
    // The options are between the item's first top-level `(` and the `)` that closes it, which
    // must be the item's last character.
    let open = marks
        .iter()
        .find(|m| m.at >= start && m.at < end && m.byte == b'(' && m.depth == 0);
    let (nav, options) = match open {
        None => (item, None),
        Some(open) => {
            let close = marks
                .iter()
                .find(|m| m.at > open.at && m.byte == b')' && m.depth == 1)
                .map_or(end, |m| m.at);
            if close + 1 != end {
                return Err(syntax_error(text, close + 1));
            }
            (
                text[start..open.at].trim_end(),
                Some((open.at + 1, &text[open.at + 1..close])),
            )
        }
    };
    if let Some(base) = nav.strip_suffix("/$ref") {
        let message = match entity.navigation(base) {
            Some(r) if r.kind == Cardinality::Many => {
                "Expand with $ref is only supported on lookup type navigation property."
            }
            _ => "Expand with $ref is not supported by the emulator.",
        };
        return Err(QueryError::new(message));
    }
    let (_, target) = navigation(entity, nav)?;
    let mut expand = ExpandItem {
        navigation: nav.to_string(),
        select: None,
        filter: None,
        orderby: Vec::new(),
        top: None,
        expand: Vec::new(),
    };
    if let Some((options_at, options)) = options {
        let option_marks: Vec<Mark> = marks
            .iter()
            .filter(|m| m.at >= options_at && m.at < options_at + options.len())
            .map(|m| Mark {
                at: m.at - options_at,
                byte: m.byte,
                depth: m.depth - 1,
            })
            .collect();
        for (at, option) in split(options, &option_marks, b';') {
            apply_option(&mut expand, option, target, count).map_err(|e| e.or_syntax(text, options_at + at))?;
        }
    }
    Ok(expand)
}

/// Reads one `$name=value` option of an expansion into `item`.
fn apply_option(item: &mut ExpandItem, option: &str, target: &Entity, count: &mut usize) -> Result<(), OptionError> {
    let (name, value) = option.split_once('=').ok_or(OptionError::Syntax)?;
    let (name, value) = (name.trim(), value.trim());
    let duplicate = || {
        OptionError::Query(QueryError::new(format!(
            "Query option '{name}' was specified more than once, but it must be specified at most once."
        )))
    };
    match name {
        "$select" if item.select.is_some() => return Err(duplicate()),
        "$select" => item.select = Some(parse_select(value, target)?),
        "$filter" if item.filter.is_some() => return Err(duplicate()),
        "$filter" => {
            let expr = parse_filter(value)?;
            compile_filter(&expr, target)?;
            item.filter = Some(expr);
        }
        "$orderby" if !item.orderby.is_empty() => return Err(duplicate()),
        "$orderby" => item.orderby = parse_orderby(value, target)?,
        "$top" if item.top.is_some() => return Err(duplicate()),
        "$top" => {
            let top = value.parse::<u32>().map_err(|_| {
                QueryError::new(format!(
                    "Invalid value '{value}' for $top query option found. The $top query option requires a non-negative integer value."
                ))
            })?;
            item.top = Some(top);
        }
        "$expand" if !item.expand.is_empty() => return Err(duplicate()),
        "$expand" => item.expand = expand_list(value, target, count)?,
        "$skip" | "$count" | "$search" | "$levels" => {
            return Err(OptionError::Query(QueryError::new(format!(
                "The query option '{name}' is not supported inside $expand: Dataverse allows only $select, $filter, $orderby, $top and $expand there."
            ))))
        }
        "" => return Err(OptionError::Syntax),
        _ => {
            return Err(OptionError::Query(QueryError::new(format!(
                "The query option '{name}' is not supported inside $expand: Dataverse allows only $select, $filter, $orderby, $top and $expand there (option names are case-sensitive)."
            ))))
        }
    }
    Ok(())
}

/// An option that failed, either with its own message or as a syntax error the caller places.
enum OptionError {
    Syntax,
    Query(QueryError),
}

impl From<QueryError> for OptionError {
    fn from(e: QueryError) -> Self {
        OptionError::Query(e)
    }
}

impl OptionError {
    fn or_syntax(self, text: &str, at: usize) -> QueryError {
        match self {
            OptionError::Syntax => syntax_error(text, at),
            OptionError::Query(e) => e,
        }
    }
}

/// A structural byte of `$expand` text outside quotes, with the nesting depth before it.
#[derive(Debug, Clone, Copy)]
struct Mark {
    at: usize,
    byte: u8,
    depth: usize,
}

/// The parentheses, brackets, commas and semicolons of `text` that are outside string literals
/// (single-quoted OData strings and double-quoted JSON strings), checking that they balance.
fn structure(text: &str) -> Result<Vec<Mark>, QueryError> {
    let (mut marks, mut depth) = (Vec::new(), 0usize);
    let mut quote: Option<u8> = None;
    let mut escaped = false;
    // Only ASCII bytes are compared, and bytes of multi-byte characters are never ASCII.
    for (at, &byte) in text.as_bytes().iter().enumerate() {
        match (quote, byte) {
            (Some(b'"'), _) if escaped => escaped = false,
            (Some(b'"'), b'\\') => escaped = true,
            // A doubled `''` closes and reopens the literal, which is the same thing.
            (Some(q), b) if b == q => quote = None,
            (Some(_), _) => {}
            (None, b'\'' | b'"') => quote = Some(byte),
            (None, b'(' | b'[') => {
                marks.push(Mark { at, byte, depth });
                depth += 1;
            }
            (None, b')' | b']') => {
                depth = depth.checked_sub(1).ok_or_else(|| syntax_error(text, at))?;
                marks.push(Mark {
                    at,
                    byte,
                    depth: depth + 1,
                });
            }
            (None, b',' | b';') => marks.push(Mark { at, byte, depth }),
            _ => {}
        }
    }
    if quote.is_some() {
        return Err(QueryError::new(format!(
            "There is an unterminated literal at position {} in '{text}'.",
            position(text, text.len())
        )));
    }
    if depth > 0 {
        return Err(syntax_error(text, text.len()));
    }
    Ok(marks)
}

/// The pieces of `text` between its top-level `sep` bytes, with their byte offsets.
fn split<'t>(text: &'t str, marks: &[Mark], sep: u8) -> Vec<(usize, &'t str)> {
    let mut pieces = Vec::new();
    let mut start = 0;
    for mark in marks.iter().filter(|m| m.byte == sep && m.depth == 0) {
        pieces.push((start, &text[start..mark.at]));
        start = mark.at + 1;
    }
    pieces.push((start, &text[start..]));
    pieces
}
