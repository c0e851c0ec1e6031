//! Natural ordering of task identifiers: runs of digits compare as numbers, so task "2" comes
//! before task "10", as users number them.

use std::cmp::Ordering;

/// Compares two identifiers naturally. Equal numbers written differently ("01", "1") are told
/// apart by plain string order at the end, so the order is total and deterministic.
pub(crate) fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut left, mut right) = (a.as_bytes(), b.as_bytes());
    loop {
        match (left.first(), right.first()) {
            (Some(l), Some(r)) if l.is_ascii_digit() && r.is_ascii_digit() => {
                let (left_number, left_rest) = split_number(left);
                let (right_number, right_rest) = split_number(right);
                let order = left_number
                    .len()
                    .cmp(&right_number.len())
                    .then_with(|| left_number.cmp(right_number));
                if order != Ordering::Equal {
                    return order;
                }
                (left, right) = (left_rest, right_rest);
            }
            (Some(l), Some(r)) => {
                if l != r {
                    return l.cmp(r);
                }
                (left, right) = (&left[1..], &right[1..]);
            }
            // A prefix comes first.
            _ => return left.len().cmp(&right.len()).then_with(|| a.cmp(b)),
        }
    }
}

/// Splits a leading run of digits off `text`, returning it without leading zeros, and the rest.
fn split_number(text: &[u8]) -> (&[u8], &[u8]) {
    let end = text
        .iter()
        .position(|byte| !byte.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, rest) = text.split_at(end);
    let significant = digits
        .iter()
        .position(|&byte| byte != b'0')
        .unwrap_or(digits.len());
    (digits.split_at(significant).1, rest)
}

#[cfg(test)]
mod tests {
    use super::natural_cmp;
    use std::cmp::Ordering::{Equal, Greater, Less};

    #[test]
    fn numbers_compare_by_value() {
        assert_eq!(natural_cmp("2", "10"), Less);
        assert_eq!(natural_cmp("10", "9"), Greater);
        assert_eq!(natural_cmp("task2", "task10"), Less);
        assert_eq!(natural_cmp("frame10b", "frame10a"), Greater);
        assert_eq!(natural_cmp("0", "00"), Less);
        assert_eq!(natural_cmp("007", "7"), Less);
        assert_eq!(natural_cmp("7", "7"), Equal);
    }

    #[test]
    fn text_and_prefixes() {
        assert_eq!(natural_cmp("a", "b"), Less);
        assert_eq!(natural_cmp("ab", "a"), Greater);
        assert_eq!(natural_cmp("", "0"), Less);
        assert_eq!(natural_cmp("a1", "1a"), Greater);
        assert_eq!(natural_cmp("é2", "é10"), Less);
    }

    #[test]
    fn sorting_a_list() {
        let mut ids = vec!["10", "1", "b", "2", "a10", "a9", "01", ""];
        ids.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(ids, ["", "01", "1", "2", "10", "a9", "a10", "b"]);
    }
}
