//! Field access for message payloads: a lenient reader that accepts what any reasonable peer
//! sends (numbers as strings or integers, `YES`/`true`/`1`, one string for a list) and names
//! the message and field when it must refuse, and an exact writer that emits what Apple emits
//! (numbers and booleans as strings, reals only where Apple uses `<real>`).

use std::collections::BTreeMap;

use super::states::WireEnum;
use super::MessageError;
use crate::plist::{Date, Dictionary, Value};

/// Reads the fields of one payload dictionary (or of a dictionary nested in it).
pub(crate) struct Fields<'a> {
    message: &'a str,
    /// Dotted path of this dictionary inside the payload, ending in `.` (empty at top level).
    path: String,
    dict: &'a Dictionary,
}

type Result<T> = std::result::Result<T, MessageError>;

// An empty string stands for "no value" in numeric and date fields: Apple's agent sends
// `terminationStatus = ""` while a task runs.
fn is_blank(value: &Value) -> bool {
    matches!(value, Value::String(s) if s.trim().is_empty())
}

impl<'a> Fields<'a> {
    pub fn new(message: &'a str, dict: &'a Dictionary) -> Fields<'a> {
        Fields {
            message,
            path: String::new(),
            dict,
        }
    }

    fn field(&self, key: &str) -> String {
        format!("{}{}", self.path, key)
    }

    fn missing(&self, key: &str) -> MessageError {
        MessageError::MissingField {
            message: self.message.to_string(),
            field: self.field(key),
        }
    }

    fn wrong_kind(&self, key: &str, expected: &'static str, found: &Value) -> MessageError {
        MessageError::WrongKind {
            message: self.message.to_string(),
            field: self.field(key),
            expected,
            found: found.kind_name(),
        }
    }

    fn bad_value(&self, key: &str, found: &Value, expected: &'static str) -> MessageError {
        let value = found
            .to_string_lenient()
            .unwrap_or_else(|| found.kind_name().to_string());
        MessageError::BadValue {
            message: self.message.to_string(),
            field: self.field(key),
            value,
            expected,
        }
    }

    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.dict.get(key)
    }

    pub fn has(&self, key: &str) -> bool {
        self.dict.contains_key(key)
    }

    /// The payload dictionary itself.
    pub fn dictionary(&self) -> &'a Dictionary {
        self.dict
    }

    /// A string (numbers and booleans are taken in their plain form); `None` when absent.
    pub fn opt_string(&self, key: &str) -> Result<Option<String>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .to_string_lenient()
                .map(Some)
                .ok_or_else(|| self.wrong_kind(key, "a string", v)),
        }
    }

    /// A string that must be present (it may be empty: peers send empty identifiers).
    pub fn required_string(&self, key: &str) -> Result<String> {
        self.opt_string(key)?.ok_or_else(|| self.missing(key))
    }

    /// A string, empty when absent.
    pub fn string(&self, key: &str) -> Result<String> {
        Ok(self.opt_string(key)?.unwrap_or_default())
    }

    /// An integer from an integer, a real or a numeric string; `None` when absent or blank.
    pub fn opt_integer(&self, key: &str) -> Result<Option<i64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) if is_blank(v) => Ok(None),
            Some(v) => v
                .to_i64()
                .map(Some)
                .ok_or_else(|| self.bad_value(key, v, "a whole number")),
        }
    }

    /// An integer, 0 when absent.
    pub fn integer(&self, key: &str) -> Result<i64> {
        Ok(self.opt_integer(key)?.unwrap_or(0))
    }

    /// A size or offset in octets: a whole number that is not negative, 0 when absent.
    pub fn size(&self, key: &str) -> Result<u64> {
        match self.opt_integer(key)? {
            None => Ok(0),
            Some(n) => u64::try_from(n).map_err(|_| {
                let value = self.get(key).cloned().unwrap_or(Value::Integer(n));
                self.bad_value(key, &value, "a size in octets (0 or more)")
            }),
        }
    }

    /// A real from a real, an integer or a numeric string; `None` when absent or blank.
    pub fn opt_real(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) if is_blank(v) => Ok(None),
            Some(v) => v
                .to_f64()
                .map(Some)
                .ok_or_else(|| self.bad_value(key, v, "a number")),
        }
    }

    /// A real, 0 when absent.
    pub fn real(&self, key: &str) -> Result<f64> {
        Ok(self.opt_real(key)?.unwrap_or(0.0))
    }

    /// A boolean from `YES`/`NO`, `true`/`false`, `1`/`0` or a plist boolean; false when absent.
    pub fn flag(&self, key: &str) -> Result<bool> {
        match self.get(key) {
            None => Ok(false),
            Some(v) => v
                .to_bool()
                .ok_or_else(|| self.bad_value(key, v, "YES or NO")),
        }
    }

    /// A list of strings from an array of strings or numbers, or from a single string;
    /// empty when absent.
    pub fn strings(&self, key: &str) -> Result<Vec<String>> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    item.to_string_lenient()
                        .ok_or_else(|| self.wrong_kind(&format!("{key}[{i}]"), "a string", item))
                })
                .collect(),
            Some(v) => match v.to_string_lenient() {
                Some(single) => Ok(vec![single]),
                None => Err(self.wrong_kind(key, "an array of strings", v)),
            },
        }
    }

    /// Bytes from data (or from a string, taken as its UTF-8 text); empty when absent.
    pub fn data(&self, key: &str) -> Result<Vec<u8>> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Data(bytes)) => Ok(bytes.clone()),
            Some(Value::String(text)) => Ok(text.clone().into_bytes()),
            Some(v) => Err(self.wrong_kind(key, "data", v)),
        }
    }

    /// A date from a date, an ISO 8601 or Foundation description string, or a number of
    /// seconds since 2001-01-01; `None` when absent or blank.
    pub fn opt_date(&self, key: &str) -> Result<Option<Date>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) if is_blank(v) => Ok(None),
            Some(Value::Date(d)) => Ok(Some(*d)),
            Some(v @ Value::String(text)) => Date::parse_iso8601(text)
                .or_else(|| Date::parse_description(text))
                .or_else(|| v.to_f64().map(Date))
                .map(Some)
                .ok_or_else(|| self.bad_value(key, v, "a date")),
            Some(v @ (Value::Integer(_) | Value::Real(_))) => Ok(v.to_f64().map(Date)),
            Some(v) => Err(self.wrong_kind(key, "a date", v)),
        }
    }

    pub fn required_date(&self, key: &str) -> Result<Date> {
        self.opt_date(key)?.ok_or_else(|| self.missing(key))
    }

    /// A nested dictionary; `None` when absent.
    pub fn opt_dictionary(&self, key: &str) -> Result<Option<&'a Dictionary>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Dictionary(d)) => Ok(Some(d)),
            Some(v) => Err(self.wrong_kind(key, "a dictionary", v)),
        }
    }

    pub fn required_dictionary(&self, key: &str) -> Result<&'a Dictionary> {
        self.opt_dictionary(key)?.ok_or_else(|| self.missing(key))
    }

    /// The fields of a nested dictionary, so errors inside it name `key.field`.
    pub fn opt_nested(&self, key: &str) -> Result<Option<Fields<'a>>> {
        Ok(self.opt_dictionary(key)?.map(|dict| Fields {
            message: self.message,
            path: format!("{}{key}.", self.path),
            dict,
        }))
    }

    pub fn required_nested(&self, key: &str) -> Result<Fields<'a>> {
        self.opt_nested(key)?.ok_or_else(|| self.missing(key))
    }

    /// A dictionary of dictionaries (`taskResults`, `inputFiles`, `outputFiles`), each entry
    /// read by `read`; empty when absent.
    pub fn entries<T>(
        &self,
        key: &str,
        read: impl Fn(&Fields<'a>) -> Result<T>,
    ) -> Result<BTreeMap<String, T>> {
        let Some(outer) = self.opt_nested(key)? else {
            return Ok(BTreeMap::new());
        };
        outer
            .dict
            .keys()
            .map(|name| Ok((name.clone(), read(&outer.required_nested(name)?)?)))
            .collect()
    }

    /// An array of dictionaries (`controllerList`), each read by `read`; empty when absent.
    pub fn records<T>(&self, key: &str, read: impl Fn(&Fields<'a>) -> Result<T>) -> Result<Vec<T>> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::Dictionary(dict) => read(&Fields {
                        message: self.message,
                        path: format!("{}{key}[{i}].", self.path),
                        dict,
                    }),
                    other => Err(self.wrong_kind(&format!("{key}[{i}]"), "a dictionary", other)),
                })
                .collect(),
            Some(v) => Err(self.wrong_kind(key, "an array", v)),
        }
    }

    /// A dictionary of strings (`environment`); empty when absent.
    pub fn string_map(&self, key: &str) -> Result<BTreeMap<String, String>> {
        let Some(outer) = self.opt_nested(key)? else {
            return Ok(BTreeMap::new());
        };
        outer
            .dict
            .keys()
            .map(|name| Ok((name.clone(), outer.string(name)?)))
            .collect()
    }

    /// One of an enumeration's wire strings, in any case; `None` when absent.
    pub fn opt_enumeration<T: WireEnum>(&self, key: &str) -> Result<Option<T>> {
        match self.opt_string(key)? {
            None => Ok(None),
            Some(text) => match T::parse(&text) {
                Some(v) => Ok(Some(v)),
                None => Err(MessageError::BadValue {
                    message: self.message.to_string(),
                    field: self.field(key),
                    value: text,
                    expected: T::EXPECTED,
                }),
            },
        }
    }

    pub fn required_enumeration<T: WireEnum>(&self, key: &str) -> Result<T> {
        self.opt_enumeration(key)?.ok_or_else(|| self.missing(key))
    }
}

/// Builds a payload exactly as Apple writes it. Every method takes and returns the writer so a
/// payload reads as one chain.
#[derive(Debug, Default)]
pub(crate) struct Payload(Dictionary);

/// A number as Apple writes it in a string: integral values without a fraction.
pub(crate) fn number_text(value: f64) -> String {
    // Rust's `Display` for f64 never uses an exponent and reads back exactly.
    format!("{value}")
}

impl Payload {
    pub fn new() -> Payload {
        Payload(Dictionary::new())
    }

    pub fn value(mut self, key: &str, value: impl Into<Value>) -> Payload {
        self.0.insert(key.to_string(), value.into());
        self
    }

    pub fn string(self, key: &str, value: &str) -> Payload {
        self.value(key, Value::from(value))
    }

    /// Left out when `None`.
    pub fn opt_string(self, key: &str, value: Option<&str>) -> Payload {
        match value {
            Some(v) => self.string(key, v),
            None => self,
        }
    }

    /// A count or identifier number, written as a string like every Apple number but
    /// `percentDone`.
    pub fn integer(self, key: &str, value: i64) -> Payload {
        self.value(key, Value::String(value.to_string()))
    }

    /// Left out when `None`.
    pub fn opt_integer(self, key: &str, value: Option<i64>) -> Payload {
        match value {
            Some(v) => self.integer(key, v),
            None => self,
        }
    }

    /// A size or offset in octets, written as a string like every other count.
    pub fn size(self, key: &str, value: u64) -> Payload {
        self.value(key, Value::String(value.to_string()))
    }

    /// A measure such as megahertz, written as a string.
    pub fn number(self, key: &str, value: f64) -> Payload {
        self.value(key, Value::String(number_text(value)))
    }

    /// `YES` or `NO`.
    pub fn yes_no(self, key: &str, value: bool) -> Payload {
        self.string(key, if value { "YES" } else { "NO" })
    }

    /// A `<real>` (only `percentDone` travels this way).
    pub fn real(self, key: &str, value: f64) -> Payload {
        self.value(key, Value::Real(value))
    }

    pub fn opt_date(self, key: &str, value: Option<Date>) -> Payload {
        match value {
            Some(d) => self.value(key, Value::Date(d)),
            None => self,
        }
    }

    pub fn data(self, key: &str, bytes: &[u8]) -> Payload {
        self.value(key, Value::Data(bytes.to_vec()))
    }

    pub fn strings(self, key: &str, items: &[String]) -> Payload {
        self.value(
            key,
            Value::Array(items.iter().map(|s| Value::from(s.as_str())).collect()),
        )
    }

    pub fn dictionary(self, key: &str, dict: Dictionary) -> Payload {
        self.value(key, Value::Dictionary(dict))
    }

    /// Whether `when` holds decides if `write` runs: keeps optional keys in the chain.
    pub fn when(self, when: bool, write: impl FnOnce(Payload) -> Payload) -> Payload {
        if when {
            write(self)
        } else {
            self
        }
    }

    pub fn finish(self) -> Dictionary {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::super::dict;
    use super::super::states::JobStatus;
    use super::*;

    fn read<T>(d: &Dictionary, f: impl Fn(&Fields) -> Result<T>) -> Result<T> {
        f(&Fields::new("test", d))
    }

    #[test]
    fn strings_accept_numbers_and_refuse_containers() {
        let d = dict! {"a" => "x", "b" => Value::Integer(12), "c" => Value::Array(vec![])};
        assert_eq!(read(&d, |f| f.string("a")).expect("parses"), "x");
        assert_eq!(read(&d, |f| f.string("b")).expect("parses"), "12");
        assert_eq!(read(&d, |f| f.string("zz")).expect("parses"), "");
        let err = read(&d, |f| f.string("c")).expect_err("refused");
        assert_eq!(
            err,
            MessageError::WrongKind {
                message: "test".into(),
                field: "c".into(),
                expected: "a string",
                found: "an array"
            }
        );
        let err = read(&d, |f| f.required_string("zz")).expect_err("refused");
        assert_eq!(
            err,
            MessageError::MissingField {
                message: "test".into(),
                field: "zz".into()
            }
        );
    }

    #[test]
    fn integers_accept_strings_reals_and_blanks() {
        let d = dict! {"s" => "42", "f" => "1200.000000", "r" => Value::Real(3.0), "e" => "", "x" => "many"};
        assert_eq!(read(&d, |f| f.integer("s")).expect("parses"), 42);
        assert_eq!(read(&d, |f| f.integer("f")).expect("parses"), 1200);
        assert_eq!(read(&d, |f| f.integer("r")).expect("parses"), 3);
        assert_eq!(read(&d, |f| f.opt_integer("e")).expect("parses"), None);
        assert_eq!(read(&d, |f| f.integer("missing")).expect("parses"), 0);
        let err = read(&d, |f| f.integer("x")).expect_err("refused");
        assert!(
            err.to_string().contains("`x`") && err.to_string().contains("many"),
            "{err}"
        );
    }

    #[test]
    fn flags_accept_every_spelling() {
        let d = dict! {"a" => "YES", "b" => "false", "c" => Value::Boolean(true), "d" => "1", "e" => "perhaps"};
        assert!(read(&d, |f| f.flag("a")).expect("parses"));
        assert!(!read(&d, |f| f.flag("b")).expect("parses"));
        assert!(read(&d, |f| f.flag("c")).expect("parses"));
        assert!(read(&d, |f| f.flag("d")).expect("parses"));
        assert!(!read(&d, |f| f.flag("absent")).expect("parses"));
        assert_eq!(
            read(&d, |f| f.flag("e")).expect_err("refused").field(),
            Some("e")
        );
    }

    #[test]
    fn string_lists_accept_single_strings_and_numbers() {
        let d = dict! {
            "one" => "solo",
            "mixed" => Value::Array(vec![Value::from("a"), Value::Integer(2)]),
            "bad" => Value::Array(vec![Value::from("a"), Value::Array(vec![])]),
        };
        assert_eq!(
            read(&d, |f| f.strings("one")).expect("parses"),
            vec!["solo"]
        );
        assert_eq!(
            read(&d, |f| f.strings("mixed")).expect("parses"),
            vec!["a", "2"]
        );
        assert!(read(&d, |f| f.strings("absent"))
            .expect("parses")
            .is_empty());
        assert_eq!(
            read(&d, |f| f.strings("bad")).expect_err("refused").field(),
            Some("bad[1]")
        );
    }

    #[test]
    fn dates_accept_strings_and_numbers() {
        let d = dict! {
            "iso" => "2007-01-25T16:23:59Z",
            "desc" => "2007-01-25 16:23:59 +0000",
            "secs" => Value::Integer(60),
            "date" => Value::Date(Date(5.0)),
        };
        let iso = read(&d, |f| f.opt_date("iso"))
            .expect("parses")
            .expect("parses");
        assert_eq!(iso.to_iso8601(), "2007-01-25T16:23:59Z");
        assert_eq!(read(&d, |f| f.opt_date("desc")).expect("parses"), Some(iso));
        assert_eq!(
            read(&d, |f| f.opt_date("secs")).expect("parses"),
            Some(Date(60.0))
        );
        assert_eq!(
            read(&d, |f| f.opt_date("date")).expect("parses"),
            Some(Date(5.0))
        );
        assert_eq!(read(&d, |f| f.opt_date("absent")).expect("parses"), None);
    }

    #[test]
    fn nested_errors_name_the_path() {
        let d = dict! {"outer" => dict! {"inner" => dict! {"n" => "NaNaN"}}};
        let err = read(&d, |f| f.entries("outer", |e| e.integer("n"))).expect_err("refused");
        assert_eq!(err.field(), Some("outer.inner.n"));
        let d = dict! {"outer" => dict! {"inner" => "not a dictionary"}};
        let err = read(&d, |f| f.entries("outer", |e| e.integer("n"))).expect_err("refused");
        assert_eq!(err.field(), Some("outer.inner"));
    }

    #[test]
    fn enumerations_list_what_they_expect() {
        let d = dict! {"s" => "running", "t" => "Sprinting"};
        assert_eq!(
            read(&d, |f| f.required_enumeration::<JobStatus>("s")).expect("parses"),
            JobStatus::Running
        );
        let err = read(&d, |f| f.required_enumeration::<JobStatus>("t")).expect_err("refused");
        let text = err.to_string();
        assert!(
            text.contains("Sprinting") && text.contains("`Finished`"),
            "{text}"
        );
    }

    #[test]
    fn writer_emits_strings_for_numbers_and_booleans() {
        let out = Payload::new()
            .integer("count", 3)
            .number("mhz", 2000.0)
            .number("frac", 1.5)
            .yes_no("flag", true)
            .real("pct", 50.0)
            .opt_string("absent", None)
            .when(false, |p| p.string("skipped", "x"))
            .finish();
        assert_eq!(
            out,
            dict! {
                "count" => "3", "mhz" => "2000", "frac" => "1.5", "flag" => "YES",
                "pct" => Value::Real(50.0),
            }
        );
    }
}
