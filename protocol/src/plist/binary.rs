//! Binary property lists (`bplist00`): a reader that treats every offset, count and
//! reference as hostile, and a writer for tests and for peers that prefer the compact form.
//!
//! Layout: the 8-byte magic, the objects, a table giving each object's offset, and a 32-byte
//! trailer (offset width, reference width, object count, root object, table offset).

use super::error::MAX_DEPTH;
use super::{Date, Dictionary, PlistError, Value};

const MAGIC: &[u8] = b"bplist00";
const TRAILER_LEN: usize = 32;

/// The key CFPropertyList uses when it writes a keyed-archiver UID in XML. We read a UID
/// object as the same one-entry dictionary, so a binary archive converts the way `plutil`
/// would convert it instead of failing.
pub(crate) const UID_KEY: &str = "CF$UID";

// ---------------------------------------------------------------------------------------
// Reading

pub(crate) fn read(bytes: &[u8]) -> Result<Value, PlistError> {
    let err = |offset: usize, message: &str| Err(binary_error(offset, message));
    if !bytes.starts_with(MAGIC) {
        let shown: String = bytes.iter().take(8).map(|&b| char::from(b)).collect();
        return err(
            0,
            &format!(
                "unsupported version `{}` (only bplist00 is read)",
                shown.escape_debug()
            ),
        );
    }
    if bytes.len() < MAGIC.len() + 1 + TRAILER_LEN {
        return err(
            bytes.len(),
            "too short to hold an object and the 32-byte trailer",
        );
    }
    let trailer_at = bytes.len() - TRAILER_LEN;
    let trailer = &bytes[trailer_at..];
    let offset_size = usize::from(trailer[6]);
    let ref_size = usize::from(trailer[7]);
    let field = |i: usize| {
        let mut n = [0u8; 8];
        n.copy_from_slice(&trailer[i..i + 8]);
        u64::from_be_bytes(n)
    };
    let (count, top, table) = (field(8), field(16), field(24));
    if !(1..=8).contains(&offset_size) {
        return err(
            trailer_at + 6,
            &format!("offset width {offset_size} is not between 1 and 8 bytes"),
        );
    }
    if !(1..=8).contains(&ref_size) {
        return err(
            trailer_at + 7,
            &format!("reference width {ref_size} is not between 1 and 8 bytes"),
        );
    }
    // Every object needs at least one byte and one table entry, so a count beyond the input
    // size is a lie; checking it first keeps all later arithmetic small.
    let count = match usize::try_from(count) {
        Ok(c) if (1..=bytes.len()).contains(&c) => c,
        _ => {
            return err(
                trailer_at + 8,
                &format!(
                    "object count {count} is impossible for {} bytes",
                    bytes.len()
                ),
            )
        }
    };
    let top = match usize::try_from(top) {
        Ok(t) if t < count => t,
        _ => {
            return err(
                trailer_at + 16,
                &format!("root object {top} is not among the {count} objects"),
            )
        }
    };
    let table = match usize::try_from(table) {
        Ok(t) if t >= MAGIC.len() && t <= trailer_at && (trailer_at - t) / offset_size >= count => {
            t
        }
        _ => {
            return err(
                trailer_at + 24,
                &format!("offset table at {table} does not fit before the trailer"),
            )
        }
    };
    let mut reader = Reader {
        bytes,
        table,
        offset_size,
        ref_size,
        count,
        on_path: vec![false; count],
        // Shared references let a small file describe a huge tree; cap what we build at a
        // generous multiple of the input size.
        budget: bytes.len().saturating_mul(32).saturating_add(4096),
    };
    reader.object(top, 0)
}

fn binary_error(offset: usize, message: &str) -> PlistError {
    PlistError::Binary {
        offset,
        message: message.to_string(),
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    /// Where the offset table starts; objects live in `8..table`.
    table: usize,
    offset_size: usize,
    ref_size: usize,
    count: usize,
    /// Objects on the path from the root to the one being read, to detect cycles.
    on_path: Vec<bool>,
    /// Values and bytes we may still build before refusing the input.
    budget: usize,
}

fn be_uint(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |n, &b| (n << 8) | u64::from(b))
}

impl<'a> Reader<'a> {
    /// `len` bytes at `at`, all inside the object area.
    fn slice(&self, at: usize, len: usize, what: &str) -> Result<&'a [u8], PlistError> {
        match at.checked_add(len) {
            Some(end) if end <= self.table => Ok(&self.bytes[at..end]),
            _ => Err(binary_error(
                at,
                &format!("{what} ({len} bytes) runs past the object area"),
            )),
        }
    }

    fn spend(&mut self, amount: usize, at: usize) -> Result<(), PlistError> {
        self.budget = self.budget.checked_sub(amount).ok_or_else(|| {
            binary_error(
                at,
                "shared references expand to far more data than the file holds",
            )
        })?;
        Ok(())
    }

    fn offset_of(&self, index: usize) -> Result<usize, PlistError> {
        let entry = self.table + index * self.offset_size;
        let raw = be_uint(&self.bytes[entry..entry + self.offset_size]);
        match usize::try_from(raw) {
            Ok(at) if at >= MAGIC.len() && at < self.table => Ok(at),
            _ => Err(binary_error(
                entry,
                &format!("object {index} has offset {raw}, outside the object area"),
            )),
        }
    }

    /// The object references stored at `at`, checked against the object count.
    fn refs(&self, at: usize, n: usize) -> Result<Vec<usize>, PlistError> {
        let len = n.saturating_mul(self.ref_size);
        let raw = self.slice(at, len, "list of object references")?;
        raw.chunks_exact(self.ref_size)
            .enumerate()
            .map(|(i, r)| match usize::try_from(be_uint(r)) {
                Ok(index) if index < self.count => Ok(index),
                _ => Err(binary_error(
                    at + i * self.ref_size,
                    &format!("reference to object {} of {}", be_uint(r), self.count),
                )),
            })
            .collect()
    }

    /// The length in a marker's low nibble, or in the integer object after it when the
    /// nibble is 0xF; also where the content starts.
    fn length(&self, at: usize, nibble: u8) -> Result<(usize, usize), PlistError> {
        if nibble != 0xF {
            return Ok((usize::from(nibble), at + 1));
        }
        let marker = self.slice(at + 1, 1, "length")?[0];
        if marker >> 4 != 0x1 || marker & 0xF > 3 {
            return Err(binary_error(
                at + 1,
                &format!("length marker 0x{marker:02x} is not a 1 to 8 byte integer"),
            ));
        }
        let width = 1usize << (marker & 0xF);
        let raw = be_uint(self.slice(at + 2, width, "length")?);
        // Any length beyond the input is rejected later by `slice`; this only has to fit.
        let len = usize::try_from(raw).unwrap_or(usize::MAX);
        Ok((len, at + 2 + width))
    }

    fn object(&mut self, index: usize, depth: usize) -> Result<Value, PlistError> {
        let at = self.offset_of(index)?;
        if depth > MAX_DEPTH {
            return Err(binary_error(
                at,
                &format!("nesting deeper than {MAX_DEPTH} levels"),
            ));
        }
        if self.on_path[index] {
            return Err(binary_error(
                at,
                &format!("object {index} contains itself (a reference cycle)"),
            ));
        }
        self.spend(1, at)?;
        let marker = self.bytes[at];
        let (kind, nibble) = (marker >> 4, marker & 0xF);
        let value = match (kind, nibble) {
            (0x0, 0x8) => Value::Boolean(false),
            (0x0, 0x9) => Value::Boolean(true),
            (0x0, 0x0) => {
                return Err(binary_error(
                    at,
                    "null objects have no property-list equivalent",
                ))
            }
            (0x1, 0..=4) => Value::Integer(self.integer(at, nibble)?),
            (0x2, 2) => {
                let b = self.slice(at + 1, 4, "real")?;
                Value::Real(f64::from(f32::from_be_bytes([b[0], b[1], b[2], b[3]])))
            }
            (0x2, 3) => Value::Real(self.f64_at(at + 1, "real")?),
            (0x3, 3) => Value::Date(Date(self.f64_at(at + 1, "date")?)),
            (0x4, _) => {
                let (len, start) = self.length(at, nibble)?;
                let content = self.slice(start, len, "data")?;
                self.spend(len, at)?;
                Value::Data(content.to_vec())
            }
            (0x5, _) => {
                let (len, start) = self.length(at, nibble)?;
                let content = self.slice(start, len, "ASCII string")?;
                self.spend(len, at)?;
                // Meant to be ASCII; any high byte is read as Latin-1 rather than refused.
                Value::String(content.iter().map(|&b| char::from(b)).collect())
            }
            (0x6, _) => {
                let (len, start) = self.length(at, nibble)?;
                let content = self.slice(start, len.saturating_mul(2), "UTF-16 string")?;
                self.spend(content.len(), at)?;
                let units = content
                    .chunks_exact(2)
                    .map(|p| u16::from_be_bytes([p[0], p[1]]));
                // A lone surrogate becomes U+FFFD: the rest of the string is still worth having.
                Value::String(
                    char::decode_utf16(units)
                        .map(|c| c.unwrap_or('\u{fffd}'))
                        .collect(),
                )
            }
            (0x8, _) => {
                let raw = be_uint(self.slice(at + 1, usize::from(nibble) + 1, "UID")?);
                let uid = i64::try_from(raw)
                    .map_err(|_| binary_error(at, "UID does not fit in 64 bits"))?;
                let mut dict = Dictionary::new();
                dict.insert(UID_KEY.to_string(), Value::Integer(uid));
                Value::Dictionary(dict)
            }
            // 0xC is a set, which plists cannot express otherwise: read it as an array.
            (0xA | 0xC, _) => {
                let (len, start) = self.length(at, nibble)?;
                let refs = self.refs(start, len)?;
                self.on_path[index] = true;
                let mut items = Vec::with_capacity(refs.len());
                for r in refs {
                    items.push(self.object(r, depth + 1)?);
                }
                self.on_path[index] = false;
                Value::Array(items)
            }
            (0xD, _) => {
                let (len, start) = self.length(at, nibble)?;
                let refs = self.refs(start, len.saturating_mul(2))?;
                let (keys, values) = refs.split_at(len);
                self.on_path[index] = true;
                let mut dict = Dictionary::new();
                for (&k, &v) in keys.iter().zip(values) {
                    let key = match self.object(k, depth + 1)? {
                        Value::String(s) => s,
                        other => {
                            return Err(binary_error(
                                at,
                                &format!("dictionary key is {}, not a string", other.kind_name()),
                            ))
                        }
                    };
                    let value = self.object(v, depth + 1)?;
                    dict.insert(key, value);
                }
                self.on_path[index] = false;
                Value::Dictionary(dict)
            }
            _ => {
                return Err(binary_error(
                    at,
                    &format!("unknown object marker 0x{marker:02x}"),
                ))
            }
        };
        Ok(value)
    }

    fn f64_at(&self, at: usize, what: &str) -> Result<f64, PlistError> {
        let b = self.slice(at, 8, what)?;
        Ok(f64::from_be_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ]))
    }

    /// 1, 2 and 4-byte integers are unsigned, 8-byte ones signed, and 16-byte ones are
    /// 128-bit signed: CF writes those for unsigned values past `i64::MAX`, which we cannot hold.
    fn integer(&self, at: usize, nibble: u8) -> Result<i64, PlistError> {
        let width = 1usize << nibble;
        let b = self.slice(at + 1, width, "integer")?;
        match width {
            1 | 2 | 4 => Ok(be_uint(b) as i64),
            8 => Ok(be_uint(b) as i64),
            _ => {
                let (high, low) = b.split_at(8);
                let low = be_uint(low) as i64;
                let sign_extension = if low < 0 { u64::MAX } else { 0 };
                if be_uint(high) == sign_extension {
                    Ok(low)
                } else {
                    Err(binary_error(at, "integer does not fit in 64 bits"))
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Writing

/// One object to write, with its children already numbered.
enum Object<'a> {
    Scalar(&'a Value),
    Key(&'a str),
    Array(Vec<usize>),
    Dictionary(Vec<usize>, Vec<usize>),
}

/// Number every object depth-first (a container before its children); no sharing.
fn collect<'a>(value: &'a Value, objects: &mut Vec<Object<'a>>) -> usize {
    let index = objects.len();
    match value {
        Value::Array(items) => {
            objects.push(Object::Array(Vec::new()));
            let refs = items.iter().map(|item| collect(item, objects)).collect();
            objects[index] = Object::Array(refs);
        }
        Value::Dictionary(dict) => {
            objects.push(Object::Dictionary(Vec::new(), Vec::new()));
            let mut keys = Vec::with_capacity(dict.len());
            let mut values = Vec::with_capacity(dict.len());
            for (key, item) in dict {
                keys.push(objects.len());
                objects.push(Object::Key(key));
                values.push(collect(item, objects));
            }
            objects[index] = Object::Dictionary(keys, values);
        }
        _ => objects.push(Object::Scalar(value)),
    }
    index
}

/// Bytes needed to hold `n` as an unsigned big-endian number (1, 2, 4 or 8).
fn width_for(n: u64) -> usize {
    match n {
        0..=0xFF => 1,
        0x100..=0xFFFF => 2,
        0x1_0000..=0xFFFF_FFFF => 4,
        _ => 8,
    }
}

fn push_uint(out: &mut Vec<u8>, n: u64, width: usize) {
    out.extend_from_slice(&n.to_be_bytes()[8 - width..]);
}

fn push_integer(out: &mut Vec<u8>, i: i64) {
    // Negative numbers only fit the signed 8-byte form.
    let width = if i < 0 { 8 } else { width_for(i as u64) };
    out.push(0x10 | width.trailing_zeros() as u8);
    push_uint(out, i as u64, width);
}

fn push_marker(out: &mut Vec<u8>, kind: u8, len: usize) {
    if len < 15 {
        out.push(kind << 4 | len as u8);
    } else {
        out.push(kind << 4 | 0xF);
        push_integer(out, len as i64);
    }
}

fn push_string(out: &mut Vec<u8>, s: &str) {
    if s.is_ascii() {
        push_marker(out, 0x5, s.len());
        out.extend_from_slice(s.as_bytes());
    } else {
        let units: Vec<u16> = s.encode_utf16().collect();
        push_marker(out, 0x6, units.len());
        for unit in units {
            out.extend_from_slice(&unit.to_be_bytes());
        }
    }
}

pub(crate) fn write(value: &Value) -> Vec<u8> {
    let mut objects = Vec::new();
    collect(value, &mut objects);
    let ref_size = width_for(objects.len() as u64 - 1);
    let mut out = Vec::with_capacity(64 + objects.len() * 16);
    out.extend_from_slice(MAGIC);
    let mut offsets = Vec::with_capacity(objects.len());
    for object in &objects {
        offsets.push(out.len() as u64);
        match object {
            Object::Key(key) => push_string(&mut out, key),
            Object::Array(refs) => {
                push_marker(&mut out, 0xA, refs.len());
                for &r in refs {
                    push_uint(&mut out, r as u64, ref_size);
                }
            }
            Object::Dictionary(keys, values) => {
                push_marker(&mut out, 0xD, keys.len());
                for &r in keys.iter().chain(values) {
                    push_uint(&mut out, r as u64, ref_size);
                }
            }
            Object::Scalar(scalar) => match scalar {
                Value::String(s) => push_string(&mut out, s),
                Value::Integer(i) => push_integer(&mut out, *i),
                Value::Real(r) => {
                    out.push(0x23);
                    out.extend_from_slice(&r.to_be_bytes());
                }
                Value::Boolean(b) => out.push(if *b { 0x09 } else { 0x08 }),
                Value::Date(d) => {
                    out.push(0x33);
                    out.extend_from_slice(&d.0.to_be_bytes());
                }
                Value::Data(bytes) => {
                    push_marker(&mut out, 0x4, bytes.len());
                    out.extend_from_slice(bytes);
                }
                // Containers were numbered as Object::Array / Object::Dictionary.
                Value::Array(_) | Value::Dictionary(_) => {}
            },
        }
    }
    let table = out.len() as u64;
    let offset_size = width_for(offsets.last().copied().unwrap_or(0));
    for offset in offsets {
        push_uint(&mut out, offset, offset_size);
    }
    out.extend_from_slice(&[0; 6]);
    out.push(offset_size as u8);
    out.push(ref_size as u8);
    out.extend_from_slice(&(objects.len() as u64).to_be_bytes());
    out.extend_from_slice(&0u64.to_be_bytes());
    out.extend_from_slice(&table.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A trailer for `count` objects, root 0, 1-byte offsets and references.
    fn trailer(count: u8, table: u8) -> Vec<u8> {
        let mut t = vec![0, 0, 0, 0, 0, 0, 1, 1];
        t.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, count]);
        t.extend_from_slice(&[0; 8]);
        t.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, table]);
        t
    }

    #[test]
    fn reads_a_hand_made_file() {
        // { "a" = (1, true, "é", 2.5, <ff>, date 0), "bb" = 300 } laid out by hand.
        let mut file = b"bplist00".to_vec();
        let objects: Vec<Vec<u8>> = vec![
            vec![0xD2, 1, 2, 3, 4],                   // 0: dict, keys 1,2 values 3,4
            vec![0x51, b'a'],                         // 1: "a"
            vec![0x52, b'b', b'b'],                   // 2: "bb"
            vec![0xA6, 5, 6, 7, 8, 9, 10],            // 3: array
            vec![0x11, 0x01, 0x2C],                   // 4: 300 in two bytes
            vec![0x10, 0x01],                         // 5: 1
            vec![0x09],                               // 6: true
            vec![0x61, 0x00, 0xE9],                   // 7: "é" in UTF-16BE
            vec![0x23, 0x40, 0x04, 0, 0, 0, 0, 0, 0], // 8: 2.5
            vec![0x41, 0xFF],                         // 9: <ff>
            vec![0x33, 0, 0, 0, 0, 0, 0, 0, 0],       // 10: 2001-01-01
        ];
        let mut offsets = Vec::new();
        for object in &objects {
            offsets.push(file.len() as u8);
            file.extend_from_slice(object);
        }
        let table = file.len() as u8;
        file.extend_from_slice(&offsets);
        file.extend_from_slice(&trailer(objects.len() as u8, table));

        let mut expected = Dictionary::new();
        expected.insert(
            "a".into(),
            Value::Array(vec![
                Value::Integer(1),
                Value::Boolean(true),
                Value::from("\u{e9}"),
                Value::Real(2.5),
                Value::Data(vec![0xFF]),
                Value::Date(Date(0.0)),
            ]),
        );
        expected.insert("bb".into(), Value::Integer(300));
        assert_eq!(read(&file), Ok(Value::Dictionary(expected)));
    }

    #[test]
    fn writer_output_matches_hand_computed_bytes() {
        let mut dict = Dictionary::new();
        dict.insert("k".into(), Value::Integer(-1));
        let bytes = write(&Value::Dictionary(dict));
        let mut expected = b"bplist00".to_vec();
        expected.extend_from_slice(&[0xD1, 1, 2]); // 8: dict
        expected.extend_from_slice(&[0x51, b'k']); // 11: "k"
        expected.extend_from_slice(&[0x13, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]); // 13
        expected.extend_from_slice(&[8, 11, 13]);
        expected.extend_from_slice(&trailer(3, 22));
        assert_eq!(bytes, expected);
    }

    #[test]
    fn integer_widths_and_long_lengths() {
        let cases = [
            (vec![0x10, 0xFF], 255),
            (vec![0x12, 0xFF, 0xFF, 0xFF, 0xFF], 4_294_967_295),
            (vec![0x13, 0x80, 0, 0, 0, 0, 0, 0, 0], i64::MIN),
        ];
        for (object, expected) in cases {
            let mut file = b"bplist00".to_vec();
            file.extend_from_slice(&object);
            let table = file.len() as u8;
            file.push(8);
            file.extend_from_slice(&trailer(1, table));
            assert_eq!(read(&file), Ok(Value::Integer(expected)));
        }
        let mut sixteen = vec![0x14];
        sixteen.extend_from_slice(&[0xFF; 8]);
        sixteen.extend_from_slice(&(-5i64).to_be_bytes());
        let mut file = b"bplist00".to_vec();
        file.extend_from_slice(&sixteen);
        file.push(8);
        file.extend_from_slice(&trailer(1, 25));
        assert_eq!(read(&file), Ok(Value::Integer(-5)));
        file[9] = 0; // high half no longer a sign extension of the low half
        assert!(read(&file)
            .expect_err("too big")
            .to_string()
            .contains("does not fit in 64 bits"));
        assert_eq!(
            read(&single(&[0x22, 0x40, 0x20, 0, 0])),
            Ok(Value::Real(2.5))
        );
        // A 20-byte string needs an integer length after the 0x5F marker.
        let long = Value::from("abcdefghijklmnopqrst");
        let bytes = write(&long);
        assert_eq!(&bytes[8..11], &[0x5F, 0x10, 20]);
        assert_eq!(read(&bytes), Ok(long));
    }

    #[test]
    fn uid_reads_as_cf_uid_dictionary_and_sets_as_arrays() {
        let mut file = b"bplist00".to_vec();
        file.extend_from_slice(&[0xC1, 1, 0x81, 0x01, 0x02]);
        file.extend_from_slice(&[8, 10]);
        file.extend_from_slice(&trailer(2, 13));
        let mut uid = Dictionary::new();
        uid.insert(UID_KEY.into(), Value::Integer(258));
        assert_eq!(read(&file), Ok(Value::Array(vec![Value::Dictionary(uid)])));
    }

    fn error_of(file: &[u8]) -> String {
        match read(file) {
            Ok(v) => panic!("should fail, read {v:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// A one-object file around `object`, with the root's offset at 8.
    fn single(object: &[u8]) -> Vec<u8> {
        let mut file = b"bplist00".to_vec();
        file.extend_from_slice(object);
        let table = file.len() as u8;
        file.push(8);
        file.extend_from_slice(&trailer(1, table));
        file
    }

    #[test]
    fn each_malformed_input_has_a_clear_error() {
        assert!(error_of(b"bplist15xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")
            .contains("unsupported version `bplist15`"));
        assert!(error_of(b"bplist00").contains("too short"));
        // Cycle: an array holding itself.
        let mut cycle = b"bplist00".to_vec();
        cycle.extend_from_slice(&[0xA1, 0]);
        cycle.push(8);
        cycle.extend_from_slice(&trailer(1, 10));
        assert!(error_of(&cycle).contains("contains itself (a reference cycle)"));
        // Reference past the object count.
        let mut bad_ref = b"bplist00".to_vec();
        bad_ref.extend_from_slice(&[0xA1, 7]);
        bad_ref.push(8);
        bad_ref.extend_from_slice(&trailer(1, 10));
        assert!(error_of(&bad_ref).contains("reference to object 7 of 1"));
        // Offset pointing into the table.
        let mut bad_offset = single(&[0x09]);
        bad_offset[9] = 200;
        assert!(error_of(&bad_offset).contains("has offset 200, outside the object area"));
        // Data claiming more bytes than there are.
        assert!(error_of(&single(&[
            0x4F, 0x13, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF
        ]))
        .contains("runs past the object area"));
        assert!(error_of(&single(&[0x4F, 0x20])).contains("is not a 1 to 8 byte integer"));
        assert!(error_of(&single(&[0x00])).contains("null objects"));
        assert!(error_of(&single(&[0x75, b'a'])).contains("unknown object marker 0x75"));
        assert!(error_of(&single(&[0x23, 1, 2])).contains("real (8 bytes) runs past"));
        assert!(error_of(&single(&[0xD1, 0, 0])).contains("contains itself"));
        // Bad trailer fields.
        let mut file = single(&[0x09]);
        let t = file.len() - TRAILER_LEN;
        file[t + 6] = 9;
        assert!(error_of(&file).contains("offset width 9"));
        let mut file = single(&[0x09]);
        file[t + 7] = 0;
        assert!(error_of(&file).contains("reference width 0"));
        let mut file = single(&[0x09]);
        file[t + 15] = 0;
        assert!(error_of(&file).contains("object count 0 is impossible"));
        let mut file = single(&[0x09]);
        file[t + 8] = 0xFF;
        assert!(error_of(&file).contains("is impossible"));
        let mut file = single(&[0x09]);
        file[t + 23] = 1;
        assert!(error_of(&file).contains("root object 1 is not among the 1 objects"));
        let mut file = single(&[0x09]);
        file[t + 31] = 200;
        assert!(error_of(&file).contains("offset table at 200 does not fit"));
        // A key that is not a string.
        let mut file = b"bplist00".to_vec();
        file.extend_from_slice(&[0xD1, 1, 1, 0x09]);
        file.extend_from_slice(&[8, 11]);
        file.extend_from_slice(&trailer(2, 12));
        assert!(error_of(&file).contains("dictionary key is a boolean, not a string"));
    }

    #[test]
    fn shared_references_cannot_explode() {
        // Object i is an array holding fourteen references to object i+1: forty levels
        // describe 14^40 values in about 700 bytes.
        let levels: u8 = 40;
        let mut file = b"bplist00".to_vec();
        let mut offsets = Vec::new();
        for i in 0..levels {
            offsets.push(file.len() as u16);
            file.push(0xAE);
            file.extend_from_slice(&[i + 1; 14]);
        }
        offsets.push(file.len() as u16);
        file.push(0x09);
        let table = file.len() as u64;
        for offset in offsets {
            file.extend_from_slice(&offset.to_be_bytes());
        }
        file.extend_from_slice(&[0, 0, 0, 0, 0, 0, 2, 1]);
        file.extend_from_slice(&(u64::from(levels) + 1).to_be_bytes());
        file.extend_from_slice(&0u64.to_be_bytes());
        file.extend_from_slice(&table.to_be_bytes());
        assert!(error_of(&file).contains("expand to far more data"));
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut value = Value::Boolean(true);
        for _ in 0..=MAX_DEPTH {
            value = Value::Array(vec![value]);
        }
        assert!(error_of(&write(&value)).contains("nesting deeper than"));
    }
}
