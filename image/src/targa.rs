//! Reading the Targa files POV-Ray writes for each tile or frame (`+FC`).
//!
//! Targa was chosen for the pieces because POV-Ray 3.7 writes a partial render
//! (`+SR/+ER/+SC/+EC`) as a full-size image with the area outside the tile left black: with
//! run-length encoding that black costs a few bytes per row, where PPM would carry the whole
//! picture per tile.

use crate::{Image, ImageError};

/// Decode a Targa file of the kinds POV-Ray writes: true colour, 24 or 32 bits, plain
/// (type 2) or run-length encoded (type 10), either row order.
pub fn read_targa(bytes: &[u8]) -> Result<Image, ImageError> {
    let header = bytes.get(..18).ok_or(ImageError::NotTarga)?;
    let id_length = usize::from(header[0]);
    let has_colour_map = header[1] != 0;
    let kind = header[2];
    let width = usize::from(u16::from_le_bytes([header[12], header[13]]));
    let height = usize::from(u16::from_le_bytes([header[14], header[15]]));
    let bits = header[16];
    let top_first = header[17] & 0x20 != 0;
    if has_colour_map || !(kind == 2 || kind == 10) {
        return Err(ImageError::TargaKind(kind));
    }
    let channels = match bits {
        24 => 3,
        32 => 4,
        other => return Err(ImageError::TargaDepth(other)),
    };
    let mut data = bytes.get(18 + id_length..).ok_or(ImageError::Truncated)?;
    let count = width * height;
    // Targa stores BGR(A); pixels are gathered in file order, then flipped if bottom-up.
    let mut file_order = Vec::with_capacity(count * channels);
    let truncated = || ImageError::Truncated;
    if kind == 2 {
        let raw = data.get(..count * channels).ok_or_else(truncated)?;
        file_order.extend_from_slice(raw);
    } else {
        while file_order.len() < count * channels {
            let (&packet, rest) = data.split_first().ok_or_else(truncated)?;
            let run = usize::from(packet & 0x7f) + 1;
            if packet & 0x80 != 0 {
                let pixel = rest.get(..channels).ok_or_else(truncated)?;
                for _ in 0..run {
                    file_order.extend_from_slice(pixel);
                }
                data = rest.get(channels..).ok_or_else(truncated)?;
            } else {
                let pixels = rest.get(..run * channels).ok_or_else(truncated)?;
                file_order.extend_from_slice(pixels);
                data = rest.get(run * channels..).ok_or_else(truncated)?;
            }
        }
        // A packet may not run past the image's end; what spills over is dropped.
        file_order.truncate(count * channels);
    }
    let stride = width * channels;
    let mut pixels = Vec::with_capacity(count * channels);
    for row in 0..height {
        let source = if top_first { row } else { height - 1 - row };
        let line = file_order
            .get(source * stride..(source + 1) * stride)
            .ok_or_else(truncated)?;
        for pixel in line.chunks_exact(channels) {
            pixels.extend_from_slice(&[pixel[2], pixel[1], pixel[0]]);
            if channels == 4 {
                pixels.push(pixel[3]);
            }
        }
    }
    Ok(Image {
        width,
        height,
        channels,
        pixels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Targa header written out by hand from the format's field layout.
    fn header(kind: u8, width: u16, height: u16, bits: u8, top_first: bool) -> Vec<u8> {
        let mut h = vec![0u8; 18];
        h[2] = kind;
        h[12..14].copy_from_slice(&width.to_le_bytes());
        h[14..16].copy_from_slice(&height.to_le_bytes());
        h[16] = bits;
        h[17] = if top_first { 0x20 } else { 0 };
        h
    }

    #[test]
    fn run_length_packets_and_raw_packets() {
        // 3x2, top row first: a run of 2 blue pixels, then a raw packet of 4 pixels.
        let mut file = header(10, 3, 2, 24, true);
        file.extend_from_slice(&[0x81, 255, 0, 0]);
        file.extend_from_slice(&[0x03, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        file.extend_from_slice(b"TRUEVISION-XFILE.\0");
        let image = read_targa(&file).expect("decodes");
        assert_eq!((image.width, image.height, image.channels), (3, 2, 3));
        assert_eq!(
            image.pixels,
            [0, 0, 255, 0, 0, 255, 3, 2, 1, 6, 5, 4, 9, 8, 7, 12, 11, 10]
        );
    }

    #[test]
    fn bottom_up_rows_with_alpha_are_flipped() {
        let mut file = header(2, 1, 2, 32, false);
        file.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        let image = read_targa(&file).expect("decodes");
        assert_eq!(image.channels, 4);
        assert_eq!(image.pixels, [7, 6, 5, 8, 3, 2, 1, 4]);
    }

    #[test]
    fn truncated_or_unsupported_files_are_errors() {
        assert!(read_targa(b"short").is_err());
        let mut file = header(10, 4, 4, 24, true);
        file.extend_from_slice(&[0x8f, 1, 2]);
        assert_eq!(read_targa(&file), Err(ImageError::Truncated));
        assert!(read_targa(&header(3, 1, 1, 8, true)).is_err());
        assert!(read_targa(&header(2, 1, 1, 16, true)).is_err());
    }
}
