//! Pictures rendered in pieces, shared by `xgrid-povray` (which assembles a job's tiles into
//! its output file) and the dashboard (which shows a render filling in as tiles finish):
//! 8-bit images in memory, the Targa files POV-Ray writes for each piece, placing a tile's
//! rectangle into the whole picture, PNG and PPM out, and reading back from a task's
//! POV-Ray command line which tile it renders.
//!
//! A crate of its own because both a client tool and the controller's dashboard need it,
//! and neither should pull in the other's dependencies (axum, sqlx).

pub mod png;
pub mod povray;
pub mod targa;

/// Why an image could not be read or put together, in words naming the piece's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error("it is shorter than a Targa header")]
    NotTarga,
    #[error("it is a Targa image of type {0}, not true colour")]
    TargaKind(u8),
    #[error("it has {0} bits per pixel, not 24 or 32")]
    TargaDepth(u8),
    #[error("its pixel data ends early")]
    Truncated,
    #[error("it is {width}x{height} with {channels} channels, the picture {picture}")]
    SizeMismatch {
        width: usize,
        height: usize,
        channels: usize,
        picture: String,
    },
    #[error("its rectangle lies outside the picture")]
    RectOutside,
    #[error("a PPM file has no alpha channel")]
    AlphaInPpm,
}

/// 8-bit pixels, rows top to bottom, 3 (RGB) or 4 (RGBA) channels per pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub pixels: Vec<u8>,
}

/// A rectangle of pixels, 0-based, end exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub top: usize,
    pub left: usize,
    pub bottom: usize,
    pub right: usize,
}

impl Image {
    /// A black (and, with alpha, fully transparent) image.
    pub fn blank(width: usize, height: usize, channels: usize) -> Image {
        Image {
            width,
            height,
            channels,
            pixels: vec![0; width * height * channels],
        }
    }

    /// Copy `rect` from `tile`, a picture of this image's size. The channels must match,
    /// except that an RGB tile may go into an RGBA image, where it becomes opaque.
    pub fn copy_rect(&mut self, tile: &Image, rect: Rect) -> Result<(), ImageError> {
        let adds_alpha = self.channels == 4 && tile.channels == 3;
        if (tile.width, tile.height) != (self.width, self.height)
            || (tile.channels != self.channels && !adds_alpha)
        {
            return Err(ImageError::SizeMismatch {
                width: tile.width,
                height: tile.height,
                channels: tile.channels,
                picture: format!("{}x{} with {}", self.width, self.height, self.channels),
            });
        }
        if rect.bottom > self.height || rect.right > self.width || rect.left > rect.right {
            return Err(ImageError::RectOutside);
        }
        let (to_stride, from_stride) = (self.width * self.channels, tile.width * tile.channels);
        for row in rect.top..rect.bottom {
            let to = row * to_stride + rect.left * self.channels
                ..row * to_stride + rect.right * self.channels;
            let from = row * from_stride + rect.left * tile.channels
                ..row * from_stride + rect.right * tile.channels;
            let (Some(to), Some(from)) = (self.pixels.get_mut(to), tile.pixels.get(from)) else {
                return Err(ImageError::Truncated);
            };
            if adds_alpha {
                for (out, pixel) in to.chunks_exact_mut(4).zip(from.chunks_exact(3)) {
                    out[..3].copy_from_slice(pixel);
                    out[3] = u8::MAX;
                }
            } else {
                to.copy_from_slice(from);
            }
        }
        Ok(())
    }

    /// Binary PPM (`P6`, maximum value 255). PPM has no alpha channel.
    pub fn to_ppm(&self) -> Result<Vec<u8>, ImageError> {
        if self.channels != 3 {
            return Err(ImageError::AlphaInPpm);
        }
        let mut out = format!("P6\n{} {}\n255\n", self.width, self.height).into_bytes();
        out.extend_from_slice(&self.pixels);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copying_a_rectangle_touches_nothing_else() {
        let mut whole = Image::blank(4, 3, 3);
        let mut tile = Image::blank(4, 3, 3);
        tile.pixels.iter_mut().for_each(|p| *p = 9);
        let rect = Rect {
            top: 1,
            left: 1,
            bottom: 3,
            right: 3,
        };
        whole.copy_rect(&tile, rect).expect("copies");
        let nines: Vec<(usize, usize)> = (0..3)
            .flat_map(|r| (0..4).map(move |c| (r, c)))
            .filter(|(r, c)| whole.pixels[(r * 4 + c) * 3] == 9)
            .collect();
        assert_eq!(nines, [(1, 1), (1, 2), (2, 1), (2, 2)]);
        assert!(whole.copy_rect(&Image::blank(2, 2, 3), rect).is_err());
        assert!(Image::blank(4, 3, 3)
            .copy_rect(&Image::blank(4, 3, 4), rect)
            .is_err());
    }

    #[test]
    fn an_rgb_tile_in_an_rgba_picture_is_opaque_and_the_rest_stays_clear() {
        let mut whole = Image::blank(2, 2, 4);
        let tile = Image {
            width: 2,
            height: 2,
            channels: 3,
            pixels: vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
        };
        let right_column = Rect {
            top: 0,
            left: 1,
            bottom: 2,
            right: 2,
        };
        whole.copy_rect(&tile, right_column).expect("copies");
        assert_eq!(
            whole.pixels,
            [0, 0, 0, 0, 4, 5, 6, 255, 0, 0, 0, 0, 10, 11, 12, 255]
        );
    }

    #[test]
    fn ppm_header_and_no_alpha() {
        let image = Image {
            width: 2,
            height: 1,
            channels: 3,
            pixels: vec![1, 2, 3, 4, 5, 6],
        };
        assert_eq!(
            image.to_ppm().expect("rgb"),
            b"P6\n2 1\n255\n\x01\x02\x03\x04\x05\x06"
        );
        assert_eq!(Image::blank(1, 1, 4).to_ppm(), Err(ImageError::AlphaInPpm));
    }
}
