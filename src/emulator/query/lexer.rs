//! Tokens of `$filter` and `$orderby` text.
//!
//! The whole text is tokenised before parsing starts, as OData Lib effectively does: that is why
//! `lastname eq 'O'Bryan'` fails as an unterminated literal (the lexer reaches the last quote)
//! rather than as a syntax error at `Bryan`.
//!
//! Positions in messages are 0-based UTF-16 code-unit offsets, because that is how .NET strings
//! count. An unterminated literal is reported where OData Lib's lexer stops: at the end of the
//! text (`lastname eq 'O'Bryan'` gives position 21, the text's length).
//!
//! The lexer walks `char`s and only slices at offsets it reached that way or after ASCII bytes, so
//! no input can make it slice inside a UTF-8 character.

use super::ast::Literal;
use super::temporal::{guid_prefix, scan_temporal, Scan};
use super::QueryError;

/// A token and the byte offset where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub tok: Tok,
    pub pos: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// A name, possibly dotted (`Microsoft.Dynamics.CRM.In`). Keywords such as `eq` and `and`
    /// are identifiers too: the parser knows them by position, as OData does.
    Ident(String),
    Lit(Literal),
    /// A JSON array (the `PropertyValues` of `Microsoft.Dynamics.CRM.In`).
    Array(Vec<Literal>),
    LParen,
    RParen,
    Comma,
    Equals,
    /// Only lexed to give navigation paths (`a/b`) a clear error.
    Slash,
    End,
}

/// The 0-based UTF-16 position of byte offset `byte` of `input`.
pub(crate) fn position(input: &str, byte: usize) -> usize {
    input.get(..byte).unwrap_or(input).encode_utf16().count()
}

/// `Syntax error at position N in '<input>'.`
pub(crate) fn syntax_error(input: &str, byte: usize) -> QueryError {
    QueryError::new(format!(
        "Syntax error at position {} in '{input}'.",
        position(input, byte)
    ))
}

/// Splits `input` into tokens, ending with [`Tok::End`] at `input.len()`.
pub(crate) fn tokenize(input: &str) -> Result<Vec<Token>, QueryError> {
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(c) = input[i..].chars().next() {
        if c.is_whitespace() {
            i += c.len_utf8();
            continue;
        }
        let (tok, len) = match c {
            '(' => (Tok::LParen, 1),
            ')' => (Tok::RParen, 1),
            ',' => (Tok::Comma, 1),
            '=' => (Tok::Equals, 1),
            '/' => (Tok::Slash, 1),
            '\'' => lex_string(input, i)?,
            '[' => lex_array(input, i)?,
            '@' => {
                return Err(QueryError::new(format!(
                    "Parameter aliases are not supported by the emulator: found '@' at position {} in '{input}'.",
                    position(input, i)
                )))
            }
            c if is_word_start(c) || (c == '-' && starts_with_digit(&input[i + 1..])) => lex_word(input, i)?,
            _ => {
                return Err(QueryError::new(format!(
                    "Syntax error: character '{c}' is not valid at position {} in '{input}'.",
                    position(input, i)
                )))
            }
        };
        tokens.push(Token { tok, pos: i });
        i += len;
    }
    tokens.push(Token {
        tok: Tok::End,
        pos: input.len(),
    });
    Ok(tokens)
}

fn is_word_start(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn starts_with_digit(s: &str) -> bool {
    s.as_bytes().first().is_some_and(u8::is_ascii_digit)
}

/// A single-quoted string starting at `start`; `''` stands for one quote.
fn lex_string(input: &str, start: usize) -> Result<(Tok, usize), QueryError> {
    let body = &input[start + 1..];
    let mut value = String::new();
    let mut chars = body.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if c != '\'' {
            value.push(c);
        } else if chars.next_if(|&(_, next)| next == '\'').is_some() {
            value.push('\'');
        } else {
            return Ok((Tok::Lit(Literal::String(value)), at + 2));
        }
    }
    Err(QueryError::new(format!(
        "There is an unterminated literal at position {} in '{input}'.",
        position(input, input.len())
    )))
}

/// A JSON array starting at `start`, read with `serde_json` once its end is found.
fn lex_array(input: &str, start: usize) -> Result<(Tok, usize), QueryError> {
    let invalid = |detail: &str| {
        QueryError::new(format!(
            "Invalid JSON. The array at position {} in '{input}' could not be read: {detail}.",
            position(input, start)
        ))
    };
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let mut end = None;
    // Only ASCII bytes are compared, and bytes of multi-byte characters are never ASCII.
    for (offset, &b) in input.as_bytes()[start..].iter().enumerate() {
        match (in_string, b) {
            (true, _) if escaped => escaped = false,
            (true, b'\\') => escaped = true,
            (true, b'"') => in_string = false,
            (true, _) => {}
            (false, b'"') => in_string = true,
            (false, b'[') => depth += 1,
            (false, b']') => {
                depth -= 1;
                if depth == 0 {
                    end = Some(offset + 1);
                    break;
                }
            }
            _ => {}
        }
    }
    let len = end.ok_or_else(|| invalid("the array is not closed"))?;
    let values: Vec<serde_json::Value> =
        serde_json::from_str(&input[start..start + len]).map_err(|e| invalid(&e.to_string()))?;
    let literals = values
        .into_iter()
        .map(|v| match v {
            serde_json::Value::Null => Ok(Literal::Null),
            serde_json::Value::Bool(b) => Ok(Literal::Bool(b)),
            serde_json::Value::Number(n) => Ok(match n.as_i64() {
                Some(i) => Literal::Int(i),
                None => Literal::Decimal(n.to_string()),
            }),
            serde_json::Value::String(s) => Ok(Literal::String(s)),
            _ => Err(invalid("only strings, numbers, booleans and null are allowed")),
        })
        .collect::<Result<_, _>>()?;
    Ok((Tok::Array(literals), len))
}

/// A GUID, date, date-time, number, keyword literal or identifier starting at `start`.
fn lex_word(input: &str, start: usize) -> Result<(Tok, usize), QueryError> {
    let rest = &input[start..];
    // GUIDs first: they can start with digits (`00000d6b-...`) or letters (`deadbeef-...`).
    if let Some(guid) = guid_prefix(rest) {
        let len = guid.len();
        return Ok((Tok::Lit(Literal::Guid(guid)), len));
    }
    let b = rest.as_bytes();
    if b[0].is_ascii_digit() || b[0] == b'-' {
        return match scan_temporal(rest) {
            Scan::Found(len, lit) => Ok((Tok::Lit(lit), len)),
            Scan::Invalid => Err(syntax_error(input, start)),
            Scan::NotTemporal => Ok(lex_number(rest)),
        };
    }
    let mut len = 0;
    loop {
        len += b[len..].iter().take_while(|&&c| is_ident_char(c)).count();
        // A dot continues a qualified name only when a name follows it.
        let dotted = b.get(len) == Some(&b'.') && b.get(len + 1).is_some_and(|&c| c.is_ascii_alphabetic() || c == b'_');
        if !dotted {
            break;
        }
        len += 1;
    }
    // Every byte counted is ASCII, so `len` is a character boundary.
    let tok = match &rest[..len] {
        "null" => Tok::Lit(Literal::Null),
        "true" => Tok::Lit(Literal::Bool(true)),
        "false" => Tok::Lit(Literal::Bool(false)),
        word => Tok::Ident(word.to_string()),
    };
    Ok((tok, len))
}

/// `-?digits(.digits)?([eE][+-]?digits)?`; integers that don't fit `i64` become decimals.
fn lex_number(rest: &str) -> (Tok, usize) {
    let b = rest.as_bytes();
    let count_digits = |from: usize| b[from.min(b.len())..].iter().take_while(|c| c.is_ascii_digit()).count();
    let mut len = usize::from(b[0] == b'-');
    len += count_digits(len);
    let mut integral = true;
    if b.get(len) == Some(&b'.') && count_digits(len + 1) > 0 {
        len += 1 + count_digits(len + 1);
        integral = false;
    }
    if matches!(b.get(len), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(b.get(len + 1), Some(b'+' | b'-')));
        let exp = count_digits(len + 1 + sign);
        if exp > 0 {
            len += 1 + sign + exp;
            integral = false;
        }
    }
    let text = &rest[..len];
    let lit = match text.parse::<i64>() {
        Ok(n) if integral => Literal::Int(n),
        _ => Literal::Decimal(text.to_string()),
    };
    (Tok::Lit(lit), len)
}
