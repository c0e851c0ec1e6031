//! The property-list value model shared by every plist format (XML, binary, old-style).

use std::collections::BTreeMap;
use std::fmt;

/// A dictionary keeps its keys sorted: Apple's writers emit keys in sorted order, and a
/// sorted map makes our output deterministic without a separate sort step.
pub type Dictionary = BTreeMap<String, Value>;

/// One property-list value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    String(String),
    Integer(i64),
    Real(f64),
    Boolean(bool),
    Date(Date),
    Data(Vec<u8>),
    Array(Vec<Value>),
    Dictionary(Dictionary),
}

/// A point in time as Apple stores it: seconds since 2001-01-01 00:00:00 UTC
/// (`CFAbsoluteTime`). XML and old-style plists carry whole seconds only.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Date(pub f64);

/// Seconds between the Unix epoch and Apple's reference date.
pub const APPLE_EPOCH_UNIX_SECONDS: i64 = 978_307_200;

/// Calendar fields of a UTC date-time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CivilTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl Date {
    /// The date `unix` seconds after 1970-01-01 UTC.
    pub fn from_unix_seconds(unix: i64) -> Date {
        Date((unix - APPLE_EPOCH_UNIX_SECONDS) as f64)
    }

    /// Whole seconds since the Unix epoch (fractions are floored).
    pub fn unix_seconds(self) -> i64 {
        self.0.floor() as i64 + APPLE_EPOCH_UNIX_SECONDS
    }

    /// The current time from the system clock.
    pub fn now() -> Date {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Date(since.as_secs_f64() - APPLE_EPOCH_UNIX_SECONDS as f64)
    }

    /// Split into UTC calendar fields (proleptic Gregorian calendar).
    pub fn to_civil(self) -> CivilTime {
        let unix = self.unix_seconds();
        let days = unix.div_euclid(86_400);
        let secs = unix.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        CivilTime {
            year,
            month,
            day,
            hour: secs / 3600,
            minute: secs / 60 % 60,
            second: secs % 60,
        }
    }

    /// Build from UTC calendar fields; `None` when a field is out of range.
    pub fn from_civil(c: CivilTime) -> Option<Date> {
        if !(1..=12).contains(&c.month)
            || c.day == 0
            || c.day > days_in_month(c.year, c.month)
            || c.hour > 23
            || c.minute > 59
            || c.second > 60
        {
            return None;
        }
        let days = days_from_civil(c.year, c.month, c.day);
        let unix = days * 86_400 + i64::from(c.hour * 3600 + c.minute * 60 + c.second);
        Some(Date::from_unix_seconds(unix))
    }

    /// ISO 8601 as XML plists write it: `2007-01-25T16:23:59Z`.
    pub fn to_iso8601(self) -> String {
        let c = self.to_civil();
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            c.year, c.month, c.day, c.hour, c.minute, c.second
        )
    }

    /// Parse `YYYY-MM-DDTHH:MM:SSZ` (the only form XML plists use). A missing `Z` is
    /// tolerated, since some hand-written files leave it out.
    pub fn parse_iso8601(text: &str) -> Option<Date> {
        let t = text.trim();
        let t = t.strip_suffix('Z').unwrap_or(t);
        let (date, time) = t.split_once('T').unwrap_or((t, "00:00:00"));
        let mut d = date.splitn(3, '-');
        let year = d.next()?.parse().ok()?;
        let month = d.next().map_or(Some(1), |m| m.parse().ok())?;
        let day = d.next().map_or(Some(1), |m| m.parse().ok())?;
        let mut h = time.splitn(3, ':');
        let hour = h.next()?.parse().ok()?;
        let minute = h.next().map_or(Some(0), |m| m.parse().ok())?;
        let second = h.next().map_or(Some(0), |m| m.parse().ok())?;
        Date::from_civil(CivilTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
        })
    }

    /// Foundation's description of a date, as the `xgrid` tool prints it:
    /// `2007-01-25 16:23:59 +0000`.
    pub fn to_description(self) -> String {
        let c = self.to_civil();
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} +0000",
            c.year, c.month, c.day, c.hour, c.minute, c.second
        )
    }

    /// Parse Foundation's description form `YYYY-MM-DD HH:MM:SS ±HHMM`.
    pub fn parse_description(text: &str) -> Option<Date> {
        let mut parts = text.split_whitespace();
        let (date, time, zone) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || zone.len() != 5 {
            return None;
        }
        let utc = Date::parse_iso8601(&format!("{date}T{time}Z"))?;
        let sign = match zone.as_bytes()[0] {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let hours: i64 = zone.get(1..3)?.parse().ok()?;
        let minutes: i64 = zone.get(3..5)?.parse().ok()?;
        Some(Date(utc.0 - (sign * (hours * 3600 + minutes * 60)) as f64))
    }
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's days-from-civil algorithm (public-domain arithmetic, written out here).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_iso8601())
    }
}

impl Value {
    /// The name of this value's kind, for error messages ("expected a string, found an array").
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::String(_) => "a string",
            Value::Integer(_) => "an integer",
            Value::Real(_) => "a real number",
            Value::Boolean(_) => "a boolean",
            Value::Date(_) => "a date",
            Value::Data(_) => "data",
            Value::Array(_) => "an array",
            Value::Dictionary(_) => "a dictionary",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_dictionary(&self) -> Option<&Dictionary> {
        match self {
            Value::Dictionary(d) => Some(d),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    pub fn as_data(&self) -> Option<&[u8]> {
        match self {
            Value::Data(d) => Some(d),
            _ => None,
        }
    }

    /// Lenient integer reading: Xgrid peers send numbers as integers, reals or strings.
    pub fn to_i64(&self) -> Option<i64> {
        match self {
            Value::Integer(i) => Some(*i),
            Value::Real(r) if r.is_finite() => Some(*r as i64),
            Value::String(s) => {
                let s = s.trim();
                s.parse::<i64>().ok().or_else(|| {
                    s.parse::<f64>()
                        .ok()
                        .filter(|r| r.is_finite())
                        .map(|r| r as i64)
                })
            }
            Value::Boolean(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    /// Lenient real reading: integers, reals and numeric strings.
    pub fn to_f64(&self) -> Option<f64> {
        match self {
            Value::Integer(i) => Some(*i as f64),
            Value::Real(r) => Some(*r),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// Lenient boolean reading: `YES`/`NO`, `true`/`false` (any case), `1`/`0`, booleans, numbers.
    pub fn to_bool(&self) -> Option<bool> {
        match self {
            Value::Boolean(b) => Some(*b),
            Value::Integer(i) => Some(*i != 0),
            Value::Real(r) => Some(*r != 0.0),
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "yes" | "true" | "y" | "1" => Some(true),
                "no" | "false" | "n" | "0" | "" => Some(false),
                _ => None,
            },
            _ => None,
        }
    }

    /// Lenient string reading: strings as they are, numbers and booleans in their plain form.
    pub fn to_string_lenient(&self) -> Option<String> {
        match self {
            Value::String(s) => Some(s.clone()),
            Value::Integer(i) => Some(i.to_string()),
            Value::Real(r) => Some(r.to_string()),
            Value::Boolean(b) => Some(if *b { "YES" } else { "NO" }.to_string()),
            _ => None,
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::String(s)
    }
}

impl From<Dictionary> for Value {
    fn from(d: Dictionary) -> Value {
        Value::Dictionary(d)
    }
}

impl From<Vec<Value>> for Value {
    fn from(a: Vec<Value>) -> Value {
        Value::Array(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apple_epoch_is_2001() {
        assert_eq!(Date(0.0).to_iso8601(), "2001-01-01T00:00:00Z");
        assert_eq!(Date::parse_iso8601("2001-01-01T00:00:00Z"), Some(Date(0.0)));
    }

    #[test]
    fn iso_round_trip_across_leap_years_and_before_1970() {
        for unix in [
            -86_400 * 365 * 40,
            0,
            951_782_400,
            1_700_000_000,
            4_102_444_800,
        ] {
            let d = Date::from_unix_seconds(unix);
            assert_eq!(
                Date::parse_iso8601(&d.to_iso8601()),
                Some(d),
                "{}",
                d.to_iso8601()
            );
        }
        assert_eq!(
            Date::from_unix_seconds(951_782_400).to_iso8601(),
            "2000-02-29T00:00:00Z"
        );
    }

    #[test]
    fn description_form_applies_zone_offset() {
        let d = Date::parse_description("2007-01-25 16:23:59 -0800").expect("parses");
        assert_eq!(d.to_iso8601(), "2007-01-26T00:23:59Z");
        assert_eq!(Date::parse_description(&d.to_description()), Some(d));
    }

    #[test]
    fn rejects_impossible_dates() {
        assert_eq!(Date::parse_iso8601("2007-02-30T00:00:00Z"), None);
        assert_eq!(Date::parse_iso8601("2007-13-01T00:00:00Z"), None);
        assert_eq!(Date::parse_iso8601("garbage"), None);
    }

    #[test]
    fn lenient_scalars() {
        assert_eq!(Value::from("42").to_i64(), Some(42));
        assert_eq!(Value::Integer(7).to_string_lenient().as_deref(), Some("7"));
        assert_eq!(Value::from("YES").to_bool(), Some(true));
        assert_eq!(Value::from("false").to_bool(), Some(false));
        assert_eq!(Value::from("maybe").to_bool(), None);
        assert_eq!(Value::from("12.5").to_f64(), Some(12.5));
    }
}
