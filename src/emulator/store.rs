//! The emulator's SQLite store: one table per entity, one column per OData property.
//!
//! Storage follows the wire form so that queries compare what clients send: GUIDs as lowercase
//! TEXT, option sets and integers as INTEGER, decimals as REAL, dates as `YYYY-MM-DD` TEXT and
//! date-times as `YYYY-MM-DDTHH:MM:SSZ` TEXT. Strings compare case-insensitively, as in Dataverse.
//! A `_sequences` table holds the RecId and number-sequence counters, inside the same transaction
//! as the rows they number, so a rolled-back change set gives its numbers back.

use super::error::ODataError;
use super::ids;
use super::query::temporal;
use crate::model::{model, Entity, PropType, Property};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension};
use serde_json::{Map, Value};
use std::path::Path;
use std::sync::Mutex;

/// The first RecId the emulator hands out, in the range the documented GUIDs show.
const FIRST_REC_ID: u64 = 0x50_0100_0000;

/// A record in wire form: OData property name to JSON value.
pub type Record = Map<String, Value>;

/// The SQLite database behind the emulator. One connection: SQLite serialises writers anyway, and
/// the emulator's work per request is small.
pub struct Store {
    conn: Mutex<Connection>,
}

impl Store {
    /// Opens (or creates) the database at `path`, or an in-memory one for `None`, and creates the
    /// tables of the model.
    pub fn open(path: Option<&Path>) -> Result<Store, ODataError> {
        let conn = match path {
            Some(p) => Connection::open(p)?,
            None => Connection::open_in_memory()?,
        };
        conn.pragma_update(None, "journal_mode", "WAL").ok();
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        super::query::register_functions(&conn)?;
        create_schema(&conn)?;
        Ok(Store { conn: Mutex::new(conn) })
    }

    /// Runs `f` in one transaction: committed when it returns `Ok`, rolled back otherwise.
    pub fn transaction<T>(&self, f: impl FnOnce(&Connection) -> Result<T, ODataError>) -> Result<T, ODataError> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction()?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Runs a read on the connection.
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T, ODataError>) -> Result<T, ODataError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn)
    }

    /// Number of rows in an entity's table.
    pub fn count(&self, entity: &Entity) -> Result<u64, ODataError> {
        self.read(|c| {
            let n: i64 = c.query_row(&format!("SELECT COUNT(*) FROM {}", table(entity)), [], |r| r.get(0))?;
            Ok(n as u64)
        })
    }
}

/// The quoted table name of an entity.
pub fn table(entity: &Entity) -> String {
    quote(&entity.logical_name)
}

/// A quoted SQL identifier.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn sql_type(p: &Property) -> &'static str {
    match p.ty {
        PropType::Int | PropType::OptionSet => "INTEGER",
        PropType::Decimal | PropType::Double => "REAL",
        PropType::String | PropType::Guid | PropType::Date | PropType::Datetime => "TEXT COLLATE NOCASE",
    }
}

fn create_schema(conn: &Connection) -> Result<(), ODataError> {
    let mut ddl =
        String::from("CREATE TABLE IF NOT EXISTS _sequences (name TEXT PRIMARY KEY, next INTEGER NOT NULL);\n");
    for e in &model().entities {
        let cols: Vec<String> = e
            .properties
            .iter()
            .map(|p| {
                let pk = if p.name == e.primary_key { " PRIMARY KEY" } else { "" };
                format!("{} {}{pk}", quote(&p.name), sql_type(p))
            })
            .collect();
        ddl.push_str(&format!(
            "CREATE TABLE IF NOT EXISTS {} ({});\n",
            table(e),
            cols.join(", ")
        ));
        // Indexes on every in-model lookup: relations are resolved by them.
        for p in e
            .properties
            .iter()
            .filter(|p| p.lookup.as_ref().is_some_and(|l| l.target_in_model))
        {
            ddl.push_str(&format!(
                "CREATE INDEX IF NOT EXISTS {} ON {} ({});\n",
                quote(&format!("ix_{}_{}", e.logical_name, p.name)),
                table(e),
                quote(&p.name)
            ));
        }
        for r in &e.graphql.relations {
            if let Some(k) = &r.parent_readable_key {
                if e.property(k).is_some() && r.lookup_on == crate::model::LookupSide::Target {
                    ddl.push_str(&format!(
                        "CREATE INDEX IF NOT EXISTS {} ON {} ({});\n",
                        quote(&format!("ix_{}_{}", e.logical_name, k)),
                        table(e),
                        quote(k)
                    ));
                }
            }
        }
    }
    conn.execute_batch(&ddl)?;
    Ok(())
}

/// Takes the next value of a named counter (starting at `first`).
pub fn next_in_sequence(conn: &Connection, name: &str, first: u64) -> Result<u64, ODataError> {
    let current: Option<i64> = conn
        .query_row("SELECT next FROM _sequences WHERE name = ?", [name], |r| r.get(0))
        .optional()?;
    let n = current.map(|c| c as u64).unwrap_or(first);
    conn.execute(
        "INSERT INTO _sequences (name, next) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET next = ?2",
        rusqlite::params![name, (n + 1) as i64],
    )?;
    Ok(n)
}

/// Raises a counter so that it hands out numbers above `seen`.
pub fn bump_sequence(conn: &Connection, name: &str, seen: u64) -> Result<(), ODataError> {
    conn.execute(
        "INSERT INTO _sequences (name, next) VALUES (?1, ?2) \
         ON CONFLICT(name) DO UPDATE SET next = MAX(next, ?2)",
        rusqlite::params![name, (seen + 1) as i64],
    )?;
    Ok(())
}

/// A new primary key for an entity.
pub fn new_primary_key(conn: &Connection, entity: &Entity) -> Result<String, ODataError> {
    let rec = next_in_sequence(conn, &format!("recid:{}", entity.logical_name), FIRST_REC_ID)?;
    Ok(ids::fno_guid(ids::entity_ordinal(entity), rec))
}

/// Converts a wire-form JSON value into the SQL value stored for a property, or says why not.
pub fn to_sql(entity: &Entity, p: &Property, v: &Value) -> Result<SqlValue, ODataError> {
    let bad = |what: &str| {
        ODataError::bad_query(format!(
            "Cannot convert the literal '{v}' to the expected type '{}' ({what}) for property '{}' on type 'Microsoft.Dynamics.CRM.{}'.",
            p.ty.edm(),
            p.name,
            entity.logical_name
        ))
    };
    if v.is_null() {
        return Ok(SqlValue::Null);
    }
    Ok(match p.ty {
        PropType::String => match v {
            Value::String(s) => SqlValue::Text(s.clone()),
            _ => return Err(bad("a string was expected")),
        },
        PropType::Guid => {
            let s = v.as_str().ok_or_else(|| bad("a GUID was expected"))?;
            SqlValue::Text(normalize_guid(s).ok_or_else(|| bad("not a GUID"))?)
        }
        PropType::Int => SqlValue::Integer(v.as_i64().ok_or_else(|| bad("an integer was expected"))?),
        PropType::OptionSet => {
            let n = v.as_i64().ok_or_else(|| bad("an option-set integer was expected"))?;
            let set = p.option_set.as_deref().and_then(|s| model().option_set(s));
            if let Some(set) = set {
                if !set.values.iter().any(|o| o.value == n) {
                    return Err(ODataError::validation(format!(
                        "The value {n} of '{}' on record of type '{}' is outside the valid range of option set '{}'.",
                        p.name, entity.logical_name, set.name
                    )));
                }
            }
            SqlValue::Integer(n)
        }
        PropType::Decimal | PropType::Double => SqlValue::Real(v.as_f64().ok_or_else(|| bad("a number was expected"))?),
        PropType::Date => {
            let s = v.as_str().ok_or_else(|| bad("a date was expected"))?;
            SqlValue::Text(normalize_date(s).ok_or_else(|| bad("not a date (YYYY-MM-DD)"))?)
        }
        PropType::Datetime => {
            let s = v.as_str().ok_or_else(|| bad("a date-time was expected"))?;
            SqlValue::Text(normalize_datetime(s).ok_or_else(|| bad("not an ISO 8601 date-time"))?)
        }
    })
}

/// Converts a stored SQL value back to wire form.
pub fn from_sql(p: &Property, v: SqlValue) -> Value {
    match v {
        SqlValue::Null => Value::Null,
        SqlValue::Integer(i) => Value::from(i),
        SqlValue::Real(f) => {
            if f.fract() == 0.0 && f.abs() < 1e15 {
                Value::from(f as i64)
            } else {
                serde_json::Number::from_f64(f)
                    .map(Value::Number)
                    .unwrap_or(Value::Null)
            }
        }
        SqlValue::Text(s) => {
            if matches!(p.ty, PropType::Int | PropType::OptionSet) {
                s.parse::<i64>().map(Value::from).unwrap_or(Value::String(s))
            } else {
                Value::String(s)
            }
        }
        SqlValue::Blob(_) => Value::Null,
    }
}

/// Lowercase hyphenated GUID, accepting braces; `None` if it is not a GUID.
pub fn normalize_guid(s: &str) -> Option<String> {
    temporal::parse_guid(s.trim_start_matches('{').trim_end_matches('}'))
}

/// `YYYY-MM-DD` from a date or the date part of a date-time (the same reader as `$filter`).
pub fn normalize_date(s: &str) -> Option<String> {
    temporal::parse_date(s).or_else(|| temporal::parse_datetime(s).map(|d| d[..10].to_string()))
}

/// `YYYY-MM-DDTHH:MM:SSZ` (UTC) from an ISO 8601 date-time with `Z` or an offset, or a date
/// (midnight UTC), as `$filter` literals are read.
pub fn normalize_datetime(s: &str) -> Option<String> {
    temporal::parse_datetime(s).or_else(|| temporal::parse_date(s).map(|d| format!("{d}T00:00:00Z")))
}

/// Inserts a complete row as given (the seed's path: no write rules, values already in wire form).
pub fn insert_row(conn: &Connection, entity: &Entity, row: &Record) -> Result<(), ODataError> {
    let mut cols = Vec::with_capacity(row.len());
    let mut vals = Vec::with_capacity(row.len());
    for (k, v) in row {
        let p = entity
            .property(k)
            .ok_or_else(|| ODataError::bad_query(format!("Unknown property '{k}' in a stored row.")))?;
        cols.push(quote(k));
        vals.push(to_sql(entity, p, v)?);
    }
    let marks = vec!["?"; cols.len()].join(", ");
    let sql = format!("INSERT INTO {} ({}) VALUES ({marks})", table(entity), cols.join(", "));
    conn.prepare_cached(&sql)?.execute(rusqlite::params_from_iter(vals))?;
    Ok(())
}

/// Reads one record by primary key with the given columns (all when `None`).
pub fn get_by_key(
    conn: &Connection,
    entity: &Entity,
    id: &str,
    select: Option<&[String]>,
) -> Result<Option<Record>, ODataError> {
    let props = selected_properties(entity, select);
    let cols: Vec<String> = props.iter().map(|p| quote(&p.name)).collect();
    let sql = format!(
        "SELECT {} FROM {} WHERE {} = ?",
        cols.join(", "),
        table(entity),
        quote(&entity.primary_key)
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query([id])?;
    match rows.next()? {
        Some(row) => Ok(Some(read_row(row, &props)?)),
        None => Ok(None),
    }
}

/// The properties to return for a `$select` (the primary key always comes back).
pub fn selected_properties<'a>(entity: &'a Entity, select: Option<&[String]>) -> Vec<&'a Property> {
    match select {
        None => entity.properties.iter().collect(),
        Some(names) => entity
            .properties
            .iter()
            .filter(|p| p.name == entity.primary_key || names.iter().any(|n| n == &p.name))
            .collect(),
    }
}

/// Reads a row whose columns are `props`, in order.
pub fn read_row(row: &rusqlite::Row<'_>, props: &[&Property]) -> Result<Record, ODataError> {
    let mut rec = Record::new();
    for (i, p) in props.iter().enumerate() {
        let v: SqlValue = row.get(i)?;
        rec.insert(p.name.clone(), from_sql(p, v));
    }
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_normalize_to_utc() {
        assert_eq!(normalize_datetime("2021-01-04").unwrap(), "2021-01-04T00:00:00Z");
        assert_eq!(
            normalize_datetime("2021-01-04T10:20:30.123Z").unwrap(),
            "2021-01-04T10:20:30Z"
        );
        assert_eq!(
            normalize_datetime("2021-01-01T01:00:00+02:00").unwrap(),
            "2020-12-31T23:00:00Z"
        );
        assert!(normalize_datetime("2021-13-01").is_none());
        assert!(normalize_datetime("yesterday").is_none());
        assert!(normalize_datetime("2021-01-04T1").is_none());
    }

    #[test]
    fn guids_normalize() {
        assert_eq!(
            normalize_guid("{00000D6B-0000-0000-0000-005001000000}").unwrap(),
            "00000d6b-0000-0000-0000-005001000000"
        );
        assert!(normalize_guid("x') or (1 eq 1").is_none());
    }

    #[test]
    fn schema_creates_every_table() {
        let store = Store::open(None).unwrap();
        for e in &model().entities {
            assert_eq!(store.count(e).unwrap(), 0);
        }
    }
}
