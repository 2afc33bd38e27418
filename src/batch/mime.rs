//! The MIME layer under `$batch`: boundary splitting (RFC 2046 §5.1.1), header blocks, lines,
//! and error positions. It knows nothing of HTTP or Dataverse; [`super::reader`] builds on it.
//!
//! Everything works on byte offsets into the *whole* batch body, so an error deep inside a
//! change set can still name its line in the body the caller received.

use super::BatchError;
use std::fmt;

/// The whole body being read; used only to turn byte offsets into line numbers when an error is
/// built, so the happy path never pays for counting lines.
pub(super) struct Body<'a> {
    whole: &'a [u8],
}

impl<'a> Body<'a> {
    pub(super) fn new(whole: &'a [u8]) -> Self {
        Body { whole }
    }

    /// 1-based line holding byte `offset`.
    fn line_at(&self, offset: usize) -> usize {
        let end = offset.min(self.whole.len());
        self.whole[..end].iter().filter(|&&b| b == b'\n').count() + 1
    }

    /// An error about the part at `pos`, pointing at the line holding byte `at`.
    pub(super) fn error(&self, pos: Pos, at: usize, what: impl fmt::Display) -> BatchError {
        BatchError::new(format!("{pos} (line {}): {what}", self.line_at(at)))
    }

    /// An error about the envelope itself rather than one part.
    pub(super) fn envelope_error(&self, at: usize, what: impl fmt::Display) -> BatchError {
        BatchError::new(format!("batch body (line {}): {what}", self.line_at(at)))
    }
}

/// Where a part sits: its 1-based top-level number, and its 1-based number inside a change set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Pos {
    pub part: usize,
    pub member: Option<usize>,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.member {
            None => write!(f, "part {}", self.part),
            Some(member) => write!(f, "part {}, change-set part {}", self.part, member),
        }
    }
}

/// One encapsulated part: its bytes without the delimiter lines and without the line break that
/// belongs to the next delimiter, plus the absolute offset where they start.
#[derive(Debug, Clone, Copy)]
pub(super) struct RawPart<'a> {
    pub offset: usize,
    pub bytes: &'a [u8],
}

/// Why a multipart body could not be split.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum SplitError {
    /// Not one `--boundary` line: wrong boundary, or not multipart at all.
    NoDelimiter,
    /// The parts never end with `--boundary--`: the body was cut short.
    Unclosed { parts: usize },
}

/// Splits `body` (starting at absolute offset `base`) into its parts.
///
/// A delimiter is a line that starts with `--boundary` followed only by optional whitespace (RFC
/// 2046 transport padding); the close delimiter is `--boundary--`, and what follows it on its line
/// and after it (the epilogue) is ignored, as is the preamble before the first delimiter. A line
/// like `--boundaryX` is ordinary content, which keeps `b` and `b2` apart when they nest.
pub(super) fn split_parts<'a>(boundary: &str, body: &'a [u8], base: usize) -> Result<Vec<RawPart<'a>>, SplitError> {
    let dash_boundary = format!("--{boundary}");
    let dash_boundary = dash_boundary.as_bytes();
    let mut parts = Vec::new();
    // Start of the current part's content, once the first delimiter has been seen.
    let mut open: Option<usize> = None;
    let mut line_start = 0;
    while line_start < body.len() {
        let line_end = find_newline(body, line_start);
        let next_line = (line_end + 1).min(body.len());
        let line = &body[line_start..line_end];
        let kind = delimiter_kind(line, dash_boundary);
        if kind != Delimiter::None {
            if let Some(start) = open {
                // The CRLF (or bare LF) before a delimiter belongs to the delimiter (RFC 2046).
                let mut end = line_start;
                if end > start && body[end - 1] == b'\n' {
                    end -= 1;
                    if end > start && body[end - 1] == b'\r' {
                        end -= 1;
                    }
                }
                parts.push(RawPart {
                    offset: base + start,
                    bytes: &body[start..end],
                });
            }
            if kind == Delimiter::Close {
                return Ok(parts);
            }
            open = Some(next_line);
        }
        line_start = next_line;
    }
    match open {
        None => Err(SplitError::NoDelimiter),
        Some(_) => Err(SplitError::Unclosed { parts: parts.len() }),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Delimiter {
    None,
    Open,
    Close,
}

fn delimiter_kind(line: &[u8], dash_boundary: &[u8]) -> Delimiter {
    let Some(rest) = line.strip_prefix(dash_boundary) else {
        return Delimiter::None;
    };
    if rest.starts_with(b"--") {
        Delimiter::Close
    } else if rest.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r')) {
        Delimiter::Open
    } else {
        Delimiter::None
    }
}

/// Index of the next `\n` at or after `from`, or `bytes.len()`.
fn find_newline(bytes: &[u8], from: usize) -> usize {
    bytes[from..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |i| from + i)
}

/// The line starting at `from` without its CRLF / LF, and where the next line starts.
/// `None` at the end of `bytes`.
pub(super) fn next_line(bytes: &[u8], from: usize) -> Option<(&[u8], usize)> {
    if from >= bytes.len() {
        return None;
    }
    let end = find_newline(bytes, from);
    let mut line = &bytes[from..end];
    if end < bytes.len() {
        if let Some(stripped) = line.strip_suffix(b"\r") {
            line = stripped;
        }
    }
    Some((line, (end + 1).min(bytes.len())))
}

/// Headers in wire order, names as written.
pub(super) type Headers = Vec<(String, String)>;

/// A header block: `Name: value` lines up to a blank line.
#[derive(Debug)]
pub(super) struct HeaderBlock {
    pub headers: Headers,
    /// Relative offset just past the blank line (or `bytes.len()` when unterminated).
    pub body_start: usize,
    /// Whether the blank line was there; without it the block ran into the end of the bytes.
    pub terminated: bool,
}

/// A malformed header line: its relative offset and what is wrong.
pub(super) struct HeaderError {
    pub at: usize,
    pub what: String,
}

/// Reads headers from `from` to the first blank line. Names are case-insensitive and kept as
/// written; the space after the colon is optional (Dataverse's docs show `Content-ID:1`); values
/// are trimmed; an obsolete folded line (leading space/tab) continues the previous value.
pub(super) fn parse_header_block(bytes: &[u8], from: usize) -> Result<HeaderBlock, HeaderError> {
    let mut headers: Headers = Vec::new();
    let mut at = from;
    while let Some((line, next)) = next_line(bytes, at) {
        if line.is_empty() {
            return Ok(HeaderBlock {
                headers,
                body_start: next,
                terminated: true,
            });
        }
        let text = std::str::from_utf8(line).map_err(|_| HeaderError {
            at,
            what: "header line is not valid UTF-8".to_string(),
        })?;
        if text.starts_with([' ', '\t']) {
            let Some((_, value)) = headers.last_mut() else {
                return Err(HeaderError {
                    at,
                    what: format!("continuation line {text:?} with no header before it"),
                });
            };
            value.push(' ');
            value.push_str(text.trim_matches([' ', '\t']));
        } else {
            headers.push(parse_header_line(text).ok_or_else(|| HeaderError {
                at,
                what: format!("expected a header line 'Name: value', found {text:?}"),
            })?);
        }
        at = next;
    }
    Ok(HeaderBlock {
        headers,
        body_start: bytes.len(),
        terminated: false,
    })
}

fn parse_header_line(text: &str) -> Option<(String, String)> {
    let (name, value) = text.split_once(':')?;
    let valid_name = !name.is_empty() && name.bytes().all(is_token_byte);
    valid_name.then(|| (name.to_string(), value.trim_matches([' ', '\t']).to_string()))
}

/// RFC 7230 `tchar`: what header names and methods are made of.
pub(super) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// First value of header `name`, compared case-insensitively.
pub(super) fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The media type of a Content-Type value, lowercased, without parameters.
pub(super) fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}
