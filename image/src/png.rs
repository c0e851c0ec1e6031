//! A minimal PNG writer for assembled pictures: 8-bit RGB or RGBA, no interlacing, the
//! image data in stored (uncompressed) deflate blocks, so no compression library is needed.
//! The file is larger than POV-Ray's own PNG, but every decoder reads it.

use crate::Image;

const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
/// The largest stored deflate block.
const MAX_STORED: usize = 65_535;

/// The whole PNG file for `image`.
pub fn encode(image: &Image) -> Vec<u8> {
    let mut out = SIGNATURE.to_vec();
    let mut header = Vec::with_capacity(13);
    header.extend_from_slice(&(image.width as u32).to_be_bytes());
    header.extend_from_slice(&(image.height as u32).to_be_bytes());
    // Bit depth 8; colour type 2 (RGB) or 6 (RGBA); deflate; filter method 0; no interlace.
    let colour_type = if image.channels == 4 { 6 } else { 2 };
    header.extend_from_slice(&[8, colour_type, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &header);
    chunk(&mut out, b"IDAT", &zlib_stored(&scanlines(image)));
    chunk(&mut out, b"IEND", &[]);
    out
}

/// Each row preceded by its filter type, 0 (none).
fn scanlines(image: &Image) -> Vec<u8> {
    let stride = image.width * image.channels;
    let mut raw = Vec::with_capacity((stride + 1) * image.height);
    if stride == 0 {
        raw.resize(image.height, 0);
        return raw;
    }
    for row in image.pixels.chunks(stride) {
        raw.push(0);
        raw.extend_from_slice(row);
    }
    raw
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(out.get(start..).unwrap_or_default());
    out.extend_from_slice(&crc.to_be_bytes());
}

/// A zlib stream of stored deflate blocks.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    // CMF 0x78 (deflate, 32K window), FLG 0x01 so that CMF*256+FLG is a multiple of 31.
    let mut out = vec![0x78, 0x01];
    let mut blocks = data.chunks(MAX_STORED).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(block) = blocks.next() {
        let last = u8::from(blocks.peek().is_none());
        let len = block.len() as u16;
        out.push(last);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.extend_from_slice(&adler32(data).to_be_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let table = crc_table();
    let mut crc = 0xffff_ffffu32;
    for &byte in data {
        crc = table[usize::from((crc as u8) ^ byte)] ^ (crc >> 8);
    }
    !crc
}

fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    for (n, entry) in table.iter_mut().enumerate() {
        let mut c = n as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
        *entry = c;
    }
    table
}

fn adler32(data: &[u8]) -> u32 {
    const MOD: u32 = 65_521;
    let (mut a, mut b) = (1u32, 0u32);
    // 5552 bytes is the most that can be summed before the 32-bit sums could overflow.
    for block in data.chunks(5552) {
        for &byte in block {
            a += u32::from(byte);
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_match_published_values() {
        // The CRC of the bytes "IEND" ends every PNG file: AE 42 60 82.
        assert_eq!(crc32(b"IEND"), 0xae42_6082);
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(adler32(b"Wikipedia"), 0x11e6_0398);
        assert_eq!(adler32(b""), 1);
    }

    /// Read the file back by its structure: chunk lengths, CRCs, stored blocks.
    fn decode(png: &[u8]) -> (Vec<u8>, Vec<u8>) {
        assert_eq!(&png[..8], SIGNATURE);
        let mut at = 8;
        let (mut header, mut idat) = (Vec::new(), Vec::new());
        while at < png.len() {
            let len = u32::from_be_bytes(png[at..at + 4].try_into().expect("4 bytes")) as usize;
            let kind = &png[at + 4..at + 8];
            let data = &png[at + 8..at + 8 + len];
            let crc = u32::from_be_bytes(
                png[at + 8 + len..at + 12 + len]
                    .try_into()
                    .expect("4 bytes"),
            );
            assert_eq!(crc, crc32(&png[at + 4..at + 8 + len]));
            match kind {
                b"IHDR" => header = data.to_vec(),
                b"IDAT" => idat.extend_from_slice(data),
                _ => {}
            }
            at += 12 + len;
        }
        assert_eq!((idat[0] as u32 * 256 + idat[1] as u32) % 31, 0);
        let mut raw = Vec::new();
        let mut pos = 2;
        loop {
            let last = idat[pos] & 1;
            let len = u16::from_le_bytes([idat[pos + 1], idat[pos + 2]]);
            let nlen = u16::from_le_bytes([idat[pos + 3], idat[pos + 4]]);
            assert_eq!(len, !nlen);
            raw.extend_from_slice(&idat[pos + 5..pos + 5 + len as usize]);
            pos += 5 + len as usize;
            if last == 1 {
                break;
            }
        }
        assert_eq!(&idat[pos..], adler32(&raw).to_be_bytes());
        (header, raw)
    }

    #[test]
    fn rows_are_filtered_none_and_split_across_blocks() {
        // 200x120 RGB: 72,120 bytes of scanlines, more than one stored block.
        let mut image = Image::blank(200, 120, 3);
        for (i, p) in image.pixels.iter_mut().enumerate() {
            *p = (i % 251) as u8;
        }
        let (header, raw) = decode(&encode(&image));
        assert_eq!(header, [0, 0, 0, 200, 0, 0, 0, 120, 8, 2, 0, 0, 0]);
        assert_eq!(raw.len(), 120 * 601);
        for (r, row) in raw.chunks(601).enumerate() {
            assert_eq!(row[0], 0);
            assert_eq!(&row[1..], &image.pixels[r * 600..(r + 1) * 600]);
        }
    }

    #[test]
    fn alpha_gives_colour_type_six() {
        let (header, raw) = decode(&encode(&Image::blank(1, 1, 4)));
        assert_eq!(header[9], 6);
        assert_eq!(raw, [0, 0, 0, 0, 0]);
    }
}
