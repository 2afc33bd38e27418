//! Property tests of the filter compiler against the emulator: every filter the gateway compiles
//! (`odata::filter`) parses in the emulator (`emulator::query`), and over a small generated table
//! in SQLite it selects exactly the rows the filter means.
//!
//! What a filter means is written down here as an evaluator over the same rows, independent of
//! both: strings compare case-insensitively (ASCII, as Dataverse's collation does for the
//! characters generated here) and `contains`/`startsWith`/`endsWith` match literally; numbers,
//! dates and date-times compare by value (date-times in UTC, offsets and fractions included);
//! an empty value never satisfies a comparison, nor its negation (SQL's three-valued logic,
//! Dataverse's "null counts as false"); an empty `in` and an empty `or` hold for no row, an
//! empty `and` for every row.

use ats_gateway::emulator::query::{compile_filter, parse_filter, register_functions};
use ats_gateway::model::{model, Entity, PropType};
use ats_gateway::odata::escape;
use ats_gateway::odata::filter::{compile, CmpOp, Filter, Literal, StrFunc};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use rusqlite::types::Value as Sql;
use std::cmp::Ordering;

/// A stored value, in the emulator's storage form.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Text(String),
    Int(i64),
    Real(f64),
}

impl Cell {
    fn sql(&self) -> Sql {
        match self {
            Cell::Text(s) => Sql::Text(s.clone()),
            Cell::Int(n) => Sql::Integer(*n),
            Cell::Real(x) => Sql::Real(*x),
        }
    }
}

/// A column the generated filters use.
#[derive(Debug, Clone)]
struct Column {
    name: String,
    ty: PropType,
    /// For option sets: the documented values, and for yes/no sets each one's meaning.
    options: Vec<(i64, Option<bool>)>,
}

/// A test case's world: an entity, the columns in play and the rows.
#[derive(Clone)]
struct World {
    entity: &'static Entity,
    columns: Vec<Column>,
    /// One value (or none) per column, the primary key first.
    rows: Vec<Vec<Option<Cell>>>,
}

/// Names the entity rather than printing the whole model entry.
impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let columns: Vec<_> = self.columns.iter().map(|c| (&c.name, c.ty)).collect();
        f.debug_struct("World")
            .field("entity", &self.entity.logical_name)
            .field("columns", &columns)
            .field("rows", &self.rows)
            .finish()
    }
}

const GUIDS: [&str; 3] = [
    "00000d6b-0000-0000-0000-005001000001",
    "00000d6b-0000-0000-0000-005001000002",
    "0000abcd-0000-0000-0000-00500100000f",
];

/// The columns of `entity` the filters use: its primary key, and the first property of every
/// other type (two strings).
fn columns(entity: &'static Entity) -> Vec<Column> {
    let mut out = vec![Column {
        name: entity.primary_key.clone(),
        ty: PropType::Guid,
        options: Vec::new(),
    }];
    let mut strings = 0;
    for p in entity
        .properties
        .iter()
        .filter(|p| p.name != entity.primary_key && !p.is_lookup())
    {
        let taken = out.iter().filter(|c| c.ty == p.ty).count();
        let wanted = if p.ty == PropType::String { 2 } else { 1 };
        if p.ty == PropType::String {
            strings += 1;
        }
        if taken >= wanted || (p.ty == PropType::String && strings > 2) {
            continue;
        }
        let options = p
            .option_set
            .as_deref()
            .and_then(|s| model().option_set(s))
            .map(|set| {
                set.values
                    .iter()
                    .take(4)
                    .map(|v| {
                        let yes_no = match v.graphql_value.as_str() {
                            "true" => Some(true),
                            "false" => Some(false),
                            _ => None,
                        };
                        (v.value, yes_no)
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(Column {
            name: p.name.clone(),
            ty: p.ty,
            options,
        });
    }
    out
}

/// Text from characters that matter: both cases, LIKE wildcards and brackets, a quote.
fn text() -> BoxedStrategy<String> {
    "[aAbB%_\\[\\]' ]{0,3}".boxed()
}

fn cell(column: &Column) -> BoxedStrategy<Cell> {
    match column.ty {
        PropType::String => text().prop_map(Cell::Text).boxed(),
        PropType::Guid => select(GUIDS.to_vec()).prop_map(|g| Cell::Text(g.into())).boxed(),
        PropType::Int => (-3i64..=3).prop_map(Cell::Int).boxed(),
        PropType::Decimal | PropType::Double => select(vec![-1.5, 0.0, 0.25, 2.0, 3.0]).prop_map(Cell::Real).boxed(),
        PropType::Date => (1u32..=4).prop_map(|d| Cell::Text(format!("2024-01-0{d}"))).boxed(),
        PropType::Datetime => select(vec![
            "2024-01-01T00:00:00Z",
            "2024-01-01T00:00:01Z",
            "2024-01-01T01:00:00Z",
        ])
        .prop_map(|t| Cell::Text(t.into()))
        .boxed(),
        PropType::OptionSet => select(column.options.iter().map(|(v, _)| *v).collect::<Vec<_>>())
            .prop_map(Cell::Int)
            .boxed(),
    }
}

fn world() -> impl Strategy<Value = World> {
    let entities: Vec<&'static Entity> = model().entities.iter().collect();
    select(entities).prop_flat_map(|entity| {
        let cols = columns(entity);
        let row = cols
            .iter()
            .enumerate()
            .map(|(i, c)| match i {
                0 => cell(c).prop_map(Some).boxed(),
                _ => proptest::option::weighted(0.8, cell(c)).boxed(),
            })
            .collect::<Vec<_>>();
        (Just(entity), Just(cols), vec(row, 0..8)).prop_map(|(entity, columns, mut rows)| {
            // Primary keys are unique: number the rows.
            for (i, r) in rows.iter_mut().enumerate() {
                r[0] = Some(Cell::Text(format!("00000d6b-0000-0000-0000-{i:012x}")));
            }
            World { entity, columns, rows }
        })
    })
}

/// A literal that fits `column` (the compiler's other refusals are tested on their own).
fn literal(column: &Column) -> BoxedStrategy<Literal> {
    match column.ty {
        PropType::String => text().prop_map(Literal::String).boxed(),
        PropType::Guid => (select(GUIDS.to_vec()), any::<bool>())
            .prop_map(|(g, upper)| Literal::Guid(if upper { g.to_uppercase() } else { g.into() }))
            .boxed(),
        PropType::Int => (-4i64..=4).prop_map(Literal::Int).boxed(),
        PropType::Decimal | PropType::Double => prop_oneof![
            (-2i64..=3).prop_map(Literal::Int),
            select(vec![-1.5, 0.25, 0.3, 2.0, 2.5]).prop_map(Literal::Float),
        ]
        .boxed(),
        PropType::Date => (1u32..=5).prop_map(|d| Literal::Date(format!("2024-01-0{d}"))).boxed(),
        PropType::Datetime => select(vec![
            "2024-01-01T00:00:00Z",
            "2024-01-01T00:00:01Z",
            "2024-01-01T01:00:00Z",
            // The same instants written otherwise, and instants between the stored seconds.
            "2024-01-01T02:00:00+01:00",
            "2023-12-31T23:00:00.000-01:00",
            "2024-01-01T00:00:00.5Z",
            "2024-01-01T00:00:00.999Z",
            "2024-01-01T01:59:59.25+01:00",
            "2024-01-01",
        ])
        .prop_map(|t| match t.len() {
            10 => Literal::Date(t.into()),
            _ => Literal::DateTime(t.into()),
        })
        .boxed(),
        PropType::OptionSet => {
            let values: Vec<Literal> = column
                .options
                .iter()
                .map(|(v, yes_no)| match yes_no {
                    Some(b) => Literal::Bool(*b),
                    None => Literal::Option(*v),
                })
                .collect();
            select(values).boxed()
        }
    }
}

fn leaf(columns: Vec<Column>) -> BoxedStrategy<Filter> {
    let strings: Vec<Column> = columns.iter().filter(|c| c.ty == PropType::String).cloned().collect();
    let any_column = select(columns);
    let comparison = any_column
        .clone()
        .prop_flat_map(|c| {
            let ops = match c.ty {
                PropType::Guid | PropType::OptionSet => vec![CmpOp::Eq, CmpOp::Ne],
                _ => vec![CmpOp::Eq, CmpOp::Ne, CmpOp::Gt, CmpOp::Ge, CmpOp::Lt, CmpOp::Le],
            };
            (Just(c.name.clone()), select(ops), literal(&c))
        })
        .prop_map(|(property, op, value)| Filter::Cmp { property, op, value });
    let membership = any_column
        .clone()
        .prop_flat_map(|c| (Just(c.name.clone()), vec(literal(&c), 0..4)))
        .prop_map(|(property, values)| Filter::In { property, values });
    let null_test = (any_column, any::<bool>()).prop_map(|(c, is_null)| Filter::IsNull {
        property: c.name,
        is_null,
    });
    let func = select(vec![StrFunc::Contains, StrFunc::StartsWith, StrFunc::EndsWith]);
    let string_function = (select(strings), func, text()).prop_map(|(c, func, value)| Filter::Str {
        property: c.name,
        func,
        value,
    });
    prop_oneof![comparison, membership, null_test, string_function].boxed()
}

fn filter(columns: Vec<Column>) -> impl Strategy<Value = Filter> {
    leaf(columns).prop_recursive(4, 24, 3, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Filter::And),
            vec(inner.clone(), 0..4).prop_map(Filter::Or),
            inner.prop_map(|f| Filter::Not(Box::new(f))),
        ]
    })
}

fn case() -> impl Strategy<Value = (World, Filter)> {
    world().prop_flat_map(|w| {
        let columns = w.columns.clone();
        (Just(w), filter(columns))
    })
}

// --- What a filter means --------------------------------------------------------------------

/// A date-time as (UTC seconds text, fraction): chronological when compared.
fn instant(text: &str) -> (String, f64) {
    let utc = escape::datetime(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    let (secs, rest) = utc.split_at(19);
    let frac = rest.trim_end_matches('Z');
    (secs.to_string(), format!("0{frac}").parse().unwrap_or(0.0))
}

fn compare(column: &Column, cell: &Cell, lit: &Literal) -> Ordering {
    match (column.ty, cell, lit) {
        (PropType::String, Cell::Text(a), Literal::String(b)) => {
            a.to_ascii_lowercase().as_bytes().cmp(b.to_ascii_lowercase().as_bytes())
        }
        (PropType::Guid, Cell::Text(a), Literal::Guid(b)) => a.cmp(&b.to_ascii_lowercase()),
        (PropType::Int, Cell::Int(a), Literal::Int(b)) => a.cmp(b),
        (_, Cell::Real(a), Literal::Int(b)) => a.partial_cmp(&(*b as f64)).unwrap(),
        (_, Cell::Real(a), Literal::Float(b)) => a.partial_cmp(b).unwrap(),
        (PropType::Date, Cell::Text(a), Literal::Date(b)) => a.cmp(b),
        (PropType::Datetime, Cell::Text(a), Literal::DateTime(b)) => {
            let (a, b) = (instant(a), instant(b));
            a.0.cmp(&b.0).then(a.1.partial_cmp(&b.1).unwrap())
        }
        (PropType::Datetime, Cell::Text(a), Literal::Date(b)) => instant(a).0.cmp(&format!("{b}T00:00:00")),
        (PropType::OptionSet, Cell::Int(a), Literal::Option(b)) => a.cmp(b),
        (PropType::OptionSet, Cell::Int(a), Literal::Bool(b)) => {
            let want = column.options.iter().find(|(_, yes_no)| *yes_no == Some(*b)).unwrap().0;
            a.cmp(&want)
        }
        other => panic!("no meaning for {other:?}"),
    }
}

/// Three-valued: `None` is SQL's NULL (unknown).
fn holds(world: &World, row: &[Option<Cell>], f: &Filter) -> Option<bool> {
    let column = |name: &str| {
        let i = world.columns.iter().position(|c| c.name == name).unwrap();
        (&world.columns[i], row[i].as_ref())
    };
    match f {
        Filter::And(items) => all(items.iter().map(|f| holds(world, row, f))),
        Filter::Or(items) => all(items.iter().map(|f| holds(world, row, f).map(|b| !b))).map(|b| !b),
        Filter::Not(inner) => holds(world, row, inner).map(|b| !b),
        Filter::Cmp { property, op, value } => {
            let (c, cell) = column(property);
            let ord = compare(c, cell?, value);
            Some(match op {
                CmpOp::Eq => ord == Ordering::Equal,
                CmpOp::Ne => ord != Ordering::Equal,
                CmpOp::Gt => ord == Ordering::Greater,
                CmpOp::Ge => ord != Ordering::Less,
                CmpOp::Lt => ord == Ordering::Less,
                CmpOp::Le => ord != Ordering::Greater,
            })
        }
        Filter::In { property, values } => {
            if values.is_empty() {
                return Some(false);
            }
            let (c, cell) = column(property);
            let cell = cell?;
            Some(values.iter().any(|v| compare(c, cell, v) == Ordering::Equal))
        }
        Filter::Str { property, func, value } => {
            let (_, cell) = column(property);
            let Cell::Text(s) = cell? else {
                unreachable!("string column")
            };
            let (s, v) = (s.to_lowercase(), value.to_lowercase());
            Some(match func {
                StrFunc::Contains => s.contains(&v),
                StrFunc::StartsWith => s.starts_with(&v),
                StrFunc::EndsWith => s.ends_with(&v),
            })
        }
        Filter::IsNull { property, is_null } => Some(column(property).1.is_none() == *is_null),
    }
}

/// Three-valued `and`: false if any is false, else unknown if any is unknown, else true (so an
/// empty one is true). `or` is its dual.
fn all(values: impl Iterator<Item = Option<bool>>) -> Option<bool> {
    let mut unknown = false;
    for v in values {
        match v {
            Some(false) => return Some(false),
            None => unknown = true,
            Some(true) => {}
        }
    }
    (!unknown).then_some(true)
}

/// The primary keys of the rows `f` selects, by meaning.
fn expected(world: &World, f: &Filter) -> Vec<String> {
    let mut keys: Vec<String> = world
        .rows
        .iter()
        .filter(|row| holds(world, row, f) == Some(true))
        .map(|row| match &row[0] {
            Some(Cell::Text(k)) => k.clone(),
            _ => unreachable!("keys are text"),
        })
        .collect();
    keys.sort();
    keys
}

// --- What the emulator selects ---------------------------------------------------------------

fn database(world: &World) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    register_functions(&conn).unwrap();
    let columns: Vec<String> = world
        .entity
        .properties
        .iter()
        .map(|p| {
            let ty = match p.ty {
                PropType::Int | PropType::OptionSet => "INTEGER",
                PropType::Decimal | PropType::Double => "REAL",
                _ => "TEXT",
            };
            format!("\"{}\" {ty}", p.name)
        })
        .collect();
    conn.execute(&format!("CREATE TABLE t ({})", columns.join(", ")), [])
        .unwrap();
    let names: Vec<String> = world.columns.iter().map(|c| format!("\"{}\"", c.name)).collect();
    let marks = vec!["?"; names.len()].join(", ");
    let insert = format!("INSERT INTO t ({}) VALUES ({marks})", names.join(", "));
    for row in &world.rows {
        let values: Vec<Sql> = row.iter().map(|c| c.as_ref().map_or(Sql::Null, Cell::sql)).collect();
        conn.execute(&insert, rusqlite::params_from_iter(values)).unwrap();
    }
    conn
}

/// The primary keys the emulator selects with the compiled text of `f`.
fn selected(world: &World, conn: &rusqlite::Connection, text: &str) -> Result<Vec<String>, String> {
    let expr = parse_filter(text).map_err(|e| format!("the emulator cannot parse it: {}", e.message))?;
    let sql = compile_filter(&expr, world.entity).map_err(|e| format!("the emulator refuses it: {}", e.message))?;
    let query = format!(
        "SELECT \"{}\" FROM t WHERE {} ORDER BY 1",
        world.entity.primary_key, sql.sql
    );
    let mut stmt = conn.prepare(&query).map_err(|e| format!("{query}: {e}"))?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(sql.params), |r| r.get::<_, String>(0))
        .map_err(|e| e.to_string())?;
    rows.collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        // A failure shrinks for at most this long, not minutes on two busy cores.
        max_shrink_time: 30_000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn compiled_filters_select_what_they_mean((world, f) in case()) {
        let text = compile(&f, world.entity).map_err(|e| TestCaseError::fail(format!("{f:?} does not compile: {e}")))?;
        let conn = database(&world);
        let got = selected(&world, &conn, &text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(got, expected(&world, &f), "{} over {:?}", text, world);
    }
}
