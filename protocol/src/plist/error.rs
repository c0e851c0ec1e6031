//! Why a property list could not be read: which format, where, and what was wrong.

/// A property list that could not be read. Writers never fail, so this is the only error
/// of the plist layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlistError {
    /// Nothing but whitespace (or comments) where a property list was expected.
    #[error("empty input: expected a property list")]
    Empty,
    /// The input is not in an encoding we read (UTF-8 or UTF-16 with a byte-order mark).
    #[error("property list text is not valid {encoding} (byte {offset})")]
    Encoding {
        encoding: &'static str,
        offset: usize,
    },
    /// An XML property list broke the XML syntax or the plist grammar.
    #[error("XML property list, byte {offset}: {message}")]
    Xml { offset: usize, message: String },
    /// A binary (`bplist00`) property list is truncated, inconsistent or hostile.
    #[error("binary property list, byte {offset}: {message}")]
    Binary { offset: usize, message: String },
    /// An old-style (NeXTSTEP) text property list broke the grammar.
    #[error("old-style property list, line {line} column {column}: {message}")]
    OldStyle {
        line: usize,
        column: usize,
        message: String,
    },
}

/// Deeper nesting than this is refused rather than risking the stack: no Xgrid message
/// comes close (a job specification nests about six levels).
pub(crate) const MAX_DEPTH: usize = 256;
