//! Property lists in the three formats Xgrid peers use: XML (what Apple writes on the wire),
//! binary (`bplist00`, which Apple's parsers accept) and old-style NeXTSTEP text (what the
//! `xgrid` tool prints and what hand-written batch files use).

mod value;

pub use value::{CivilTime, Date, Dictionary, Value, APPLE_EPOCH_UNIX_SECONDS};
