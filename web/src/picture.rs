//! The picture of a job rendered tile by tile, as far as it has come: finished tiles put
//! together on the server into one PNG, the rest of the picture left transparent (the page
//! shows a grey backdrop through it). The job's page loads it again as tiles finish.
//!
//! Put together here rather than drawn tile by tile in the browser: one request per change
//! instead of one per tile, the Targa files (which browsers cannot read) never leave the
//! server, and the PNG is the same the `xgrid-povray` tool would write.

use xgrid_image::targa::read_targa;
use xgrid_image::{png, Image};

use crate::view::JobPicture;

/// The largest picture the dashboard puts together (4 bytes a pixel in memory while it
/// does): 8K by 4K. A larger render is still shown by its tasks and files.
pub const MAX_PIXELS: usize = 8192 * 4096;

/// The PNG of `picture`, or why it cannot be shown. A tile whose file cannot be read is
/// left out, as if unfinished.
pub fn render(picture: &JobPicture) -> Result<Vec<u8>, String> {
    let size = picture.size;
    if size.width.saturating_mul(size.height) > MAX_PIXELS {
        return Err(format!(
            "the picture is {}x{}, too large to show here",
            size.width, size.height
        ));
    }
    let mut whole = Image::blank(size.width, size.height, 4);
    for tile in &picture.tiles {
        if let Ok(image) = read_targa(&tile.targa) {
            let _ = whole.copy_rect(&image, tile.rect);
        }
    }
    Ok(png::encode(&whole))
}
