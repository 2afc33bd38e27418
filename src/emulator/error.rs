//! The emulator's one error type: a Dataverse error response (`{"error":{"code","message"}}`).

use serde_json::json;

/// An error the emulator answers with, in Dataverse's JSON shape and status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ODataError {
    pub status: u16,
    /// Dataverse error code such as `0x80060888`; often empty in real responses.
    pub code: &'static str,
    pub message: String,
}

/// Codes Dataverse documents for the errors the emulator produces.
pub mod codes {
    /// Bad query / resource not found for a segment.
    pub const QUERY: &str = "0x80060888";
    /// A validation error occurred.
    pub const VALIDATION: &str = "0x80044331";
    /// Object does not exist.
    pub const NOT_FOUND: &str = "0x80040217";
    /// Number of requests exceeded the limit.
    pub const THROTTLED: &str = "0x80072322";
    /// Generic server error (plug-in / F&O failure).
    pub const SERVER: &str = "0x80040265";
}

impl ODataError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        ODataError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 for a malformed query or URL.
    pub fn bad_query(message: impl Into<String>) -> Self {
        Self::new(400, codes::QUERY, message)
    }

    /// 400 for a write that breaks a rule of the data.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(
            400,
            codes::VALIDATION,
            format!("A validation error occurred. {}", message.into()),
        )
    }

    /// 404 for an unknown segment (entity set, property, navigation).
    pub fn segment_not_found(segment: &str) -> Self {
        Self::new(
            404,
            codes::QUERY,
            format!("Resource not found for the segment '{segment}'."),
        )
    }

    /// 404 for a missing record, with Dataverse's message.
    pub fn record_not_found(logical_name: &str, id: &str) -> Self {
        Self::new(
            404,
            codes::NOT_FOUND,
            format!("{logical_name} With Id = {id} Does Not Exist"),
        )
    }

    /// The JSON body Dataverse sends.
    pub fn body(&self) -> serde_json::Value {
        json!({ "error": { "code": self.code, "message": self.message } })
    }
}

impl std::fmt::Display for ODataError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ODataError {}

impl From<rusqlite::Error> for ODataError {
    fn from(e: rusqlite::Error) -> Self {
        tracing::error!(error = %e, "emulator store error");
        ODataError::new(
            500,
            codes::SERVER,
            "An unexpected error occurred in the emulator's store.",
        )
    }
}
