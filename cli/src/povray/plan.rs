//! How a render becomes one Xgrid job: the pieces (image tiles or animation frames), the
//! order they are handed out in, and each task's POV-Ray command line.
//!
//! - Tiles are whole multiples of POV-Ray's render block (`+BS`, 32 by default) and start
//!   on the block grid. POV-Ray's default anti-aliasing (`+AM1`) compares neighbouring
//!   pixels only within a block, so tiles cut on the grid give exactly the pixels of a
//!   single render; tiles cut elsewhere were seen to differ along their edges.
//!   This holds for what POV-Ray computes from the pixel's position alone. Jittered area
//!   lights draw from a random sequence that runs on from block to block, so a scene with
//!   `area_light … jitter` comes out slightly different in tiles; POV-Ray's own renders of
//!   such a scene (its benchmark scene) with one and with two threads differ as well.
//! - The controller starts tasks in natural identifier order, so task `0` is handed out
//!   first. Tiles are numbered by a golden-ratio stride through the raster order: tiles
//!   handed out one after another lie far apart, so an expensive region of the picture is
//!   shared among the agents and does not all come last.
//! - Every tile parses the scene (and shoots its photons) again, so tiles are not made
//!   small: about 16 by default (`-tiles`). A scene whose parsing is slow wants fewer. For
//!   POV-Ray's benchmark scene at 256x256 that start-up is 1.5 s of a processor per tile,
//!   against about 120 s for the whole picture.
//! - The tiles handed out last are half the size of the others: when a processor runs out
//!   of work, the tile still rendering elsewhere is a small one, so the render does not
//!   end with processors idle behind one large tile. The picture is cut into equal tiles,
//!   and the last third of those (in hand-out order) are split in two, the halves going to
//!   the end of the order; the count of equal tiles is the one that gives the count closest
//!   to the `-tiles N` asked for (about `3N/4`).
//! - Each task renders with one thread (`+WT1`, given before the user's options so a `+WT`
//!   of theirs wins): an agent offers one slot per processor.

use xgrid_protocol::plist::{Dictionary, Value};

use super::options::{Frames, RenderOptions};
use super::scene::SceneFiles;
use xgrid_image::Rect;

/// The tool's own POV-Ray: the agents are expected to have it at this path.
pub const POVRAY: &str = "/usr/bin/povray";
pub use xgrid_image::povray::{APPLICATION_IDENTIFIER, TASK_OUTPUT};
/// Tiles to aim for when `-tiles` is not given.
pub const DEFAULT_TILES: usize = 16;

/// One task's share of the work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece {
    Tile(Rect),
    Frame(u64),
}

/// The pieces in hand-out order: index `i` becomes task `i`.
pub fn pieces(render: &RenderOptions, tiles: Option<usize>) -> Vec<Piece> {
    match render.frames {
        Some(frames) => spread(&frame_numbers(frames))
            .into_iter()
            .map(Piece::Frame)
            .collect(),
        None => {
            let wanted = tiles.unwrap_or(DEFAULT_TILES).max(1);
            let block = render.block_size.max(1);
            // The count of equal tiles whose split gives the count closest to the one asked
            // for (the block grid allows only some counts), tried near three quarters of it.
            let around = (wanted * 3).div_ceil(4);
            let mut best: Option<Vec<Rect>> = None;
            for equal in around.saturating_sub(16).max(1)..=(around + 16).min(wanted) {
                let cut = split_the_last(&spread(&tile_rects(render, equal)), block);
                let closer = best
                    .as_ref()
                    .is_none_or(|b| cut.len().abs_diff(wanted) < b.len().abs_diff(wanted));
                if closer {
                    best = Some(cut);
                }
            }
            best.unwrap_or_default()
                .into_iter()
                .map(Piece::Tile)
                .collect()
        }
    }
}

/// `tiles` with the last third of them (rounded up; none of a single tile) split in halves
/// on the block grid, the first halves then the second halves at the end of the order. A
/// tile one block square stays whole.
pub fn split_the_last(tiles: &[Rect], block: usize) -> Vec<Rect> {
    let split = if tiles.len() < 2 {
        0
    } else {
        tiles.len().div_ceil(3)
    };
    let keep = tiles.len() - split;
    let (whole, last) = tiles.split_at(keep);
    let mut firsts = Vec::new();
    let mut seconds = Vec::new();
    for tile in last {
        match halves(*tile, block) {
            Some((a, b)) => {
                firsts.push(a);
                seconds.push(b);
            }
            None => firsts.push(*tile),
        }
    }
    whole.iter().copied().chain(firsts).chain(seconds).collect()
}

/// `rect` cut in two across its longer side, at a block boundary near the middle.
fn halves(rect: Rect, block: usize) -> Option<(Rect, Rect)> {
    let blocks_down = (rect.bottom - rect.top).div_ceil(block);
    let blocks_across = (rect.right - rect.left).div_ceil(block);
    if blocks_down >= blocks_across && blocks_down >= 2 {
        let middle = rect.top + blocks_down / 2 * block;
        Some((
            Rect {
                bottom: middle,
                ..rect
            },
            Rect {
                top: middle,
                ..rect
            },
        ))
    } else if blocks_across >= 2 {
        let middle = rect.left + blocks_across / 2 * block;
        Some((
            Rect {
                right: middle,
                ..rect
            },
            Rect {
                left: middle,
                ..rect
            },
        ))
    } else {
        None
    }
}

fn frame_numbers(frames: Frames) -> Vec<u64> {
    (frames.first..=frames.last).collect()
}

/// Tiles in raster order: the number of tiles closest to `target`, and among those the
/// squarest tiles, each a whole number of blocks wide and high.
pub fn tile_rects(render: &RenderOptions, target: usize) -> Vec<Rect> {
    let block = render.block_size.max(1);
    let blocks_across = render.width.div_ceil(block);
    let blocks_down = render.height.div_ceil(block);
    let mut best = (usize::MAX, f64::INFINITY, 1, 1);
    for across in 1..=blocks_across {
        // Only tile heights near the one that gives `target` tiles with this width are
        // worth trying; trying them all is quadratic in the image size.
        let columns = blocks_across.div_ceil(across);
        let rows_wanted = (target as f64 / columns as f64).max(1.0);
        let guess = ((blocks_down as f64 / rows_wanted).ceil() as usize).clamp(1, blocks_down);
        for down in guess.saturating_sub(1).max(1)..=(guess + 1).min(blocks_down) {
            let count = blocks_across.div_ceil(across) * blocks_down.div_ceil(down);
            let miss = count.abs_diff(target);
            let skew = (across as f64 / down as f64).ln().abs();
            if miss < best.0 || (miss == best.0 && skew < best.1) {
                best = (miss, skew, across, down);
            }
        }
    }
    let tile_width = best.2 * block;
    let tile_height = best.3 * block;
    let mut rects = Vec::new();
    for top in (0..render.height).step_by(tile_height) {
        for left in (0..render.width).step_by(tile_width) {
            rects.push(Rect {
                top,
                left,
                bottom: (top + tile_height).min(render.height),
                right: (left + tile_width).min(render.width),
            });
        }
    }
    rects
}

/// `items` reordered by a stride near the golden section of their count, coprime with it so
/// every item comes exactly once.
pub fn spread<T: Copy>(items: &[T]) -> Vec<T> {
    let n = items.len();
    if n < 3 {
        return items.to_vec();
    }
    let golden = ((n as f64) * 0.618_034).round() as usize;
    let stride = (golden..n)
        .chain(1..golden)
        .find(|&s| gcd(s, n) == 1)
        .unwrap_or(1);
    (0..n)
        .filter_map(|i| items.get(i * stride % n).copied())
        .collect()
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// POV-Ray's arguments for one task.
pub fn task_arguments(
    piece: Piece,
    render: &RenderOptions,
    user_options: &[String],
    scene: &str,
) -> Vec<String> {
    let mut args = vec!["+WT1".to_string()];
    args.extend(user_options.iter().cloned());
    args.extend([
        format!("+W{}", render.width),
        format!("+H{}", render.height),
        format!("+BS{}", render.block_size),
        format!("+I{scene}"),
        // No display, no banner-sized render and statistics reports; warnings and errors stay.
        "-D".to_string(),
        "-V".to_string(),
        "-GR".to_string(),
        "-GS".to_string(),
        "+FC".to_string(),
        format!("+O{TASK_OUTPUT}"),
    ]);
    match piece {
        // POV-Ray counts rows and columns from 1, both ends included.
        Piece::Tile(rect) => args.extend([
            format!("+SR{}", rect.top + 1),
            format!("+ER{}", rect.bottom),
            format!("+SC{}", rect.left + 1),
            format!("+EC{}", rect.right),
        ]),
        Piece::Frame(frame) => args.extend([format!("+SF{frame}"), format!("+EF{frame}")]),
    }
    args
}

/// The job specification: the scene files for every task, one task per piece.
pub fn job_specification(
    name: &str,
    scene: &SceneFiles,
    pieces: &[Piece],
    render: &RenderOptions,
    user_options: &[String],
) -> Dictionary {
    let input_files = scene
        .files
        .iter()
        .map(|(key, file)| {
            let mut file = file.clone();
            file.is_executable = false;
            (key.clone(), file.to_input_file())
        })
        .collect::<Dictionary>();
    let tasks = pieces
        .iter()
        .enumerate()
        .map(|(i, piece)| {
            let arguments = task_arguments(*piece, render, user_options, &scene.scene)
                .into_iter()
                .map(Value::from)
                .collect();
            let task = Dictionary::from([
                ("command".to_string(), Value::from(POVRAY)),
                ("arguments".to_string(), Value::Array(arguments)),
            ]);
            (i.to_string(), Value::Dictionary(task))
        })
        .collect::<Dictionary>();
    Dictionary::from([
        (
            "applicationIdentifier".to_string(),
            Value::from(APPLICATION_IDENTIFIER),
        ),
        ("inputFiles".to_string(), Value::Dictionary(input_files)),
        ("name".to_string(), Value::from(name)),
        ("taskSpecifications".to_string(), Value::Dictionary(tasks)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn render(width: usize, height: usize, block_size: usize) -> RenderOptions {
        RenderOptions {
            width,
            height,
            block_size,
            alpha: false,
            frames: None,
        }
    }

    #[test]
    fn tiles_follow_the_block_grid() {
        let rects = tile_rects(&render(160, 120, 32), 6);
        // 5x4 blocks; 3 columns of 2 blocks (the last 1 block wide), 2 rows of 2 blocks.
        let tops: Vec<_> = rects.iter().map(|r| (r.top, r.bottom)).collect();
        let lefts: Vec<_> = rects.iter().map(|r| (r.left, r.right)).collect();
        assert_eq!(
            tops,
            [(0, 64), (0, 64), (0, 64), (64, 120), (64, 120), (64, 120)]
        );
        assert_eq!(lefts[..3], [(0, 64), (64, 128), (128, 160)]);
        let twelve = tile_rects(&render(160, 120, 32), 12);
        assert_eq!(twelve.len(), 12);
        let mut rows: Vec<_> = twelve.iter().map(|r| (r.top, r.bottom)).collect();
        rows.dedup();
        assert_eq!(rows, [(0, 32), (32, 64), (64, 96), (96, 120)]);
        assert!(twelve.iter().all(|r| r.left % 64 == 0));
        // The largest image is planned without trying every tile size.
        assert_eq!(tile_rects(&render(65_535, 65_535, 4), 16).len(), 16);
        // A 64x48 image has only 2x2 blocks, whatever is asked.
        assert_eq!(tile_rects(&render(64, 48, 32), 24).len(), 4);
        assert_eq!(tile_rects(&render(64, 48, 32), 1).len(), 1);
    }

    #[test]
    fn spreading_is_a_permutation_that_separates_neighbours() {
        assert_eq!(spread(&[0, 1, 2, 3]), [0, 3, 2, 1]);
        assert_eq!(
            spread(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
            [0, 7, 4, 1, 8, 5, 2, 9, 6, 3]
        );
        assert_eq!(spread(&[5, 6]), [5, 6]);
    }

    #[test]
    fn task_arguments_put_the_tool_settings_last() {
        let rect = Rect {
            top: 32,
            left: 0,
            bottom: 48,
            right: 32,
        };
        let args = task_arguments(
            Piece::Tile(rect),
            &render(64, 48, 32),
            &["+A0.3".to_string(), "+WT2".to_string()],
            "scene.pov",
        );
        assert_eq!(
            args,
            [
                "+WT1",
                "+A0.3",
                "+WT2",
                "+W64",
                "+H48",
                "+BS32",
                "+Iscene.pov",
                "-D",
                "-V",
                "-GR",
                "-GS",
                "+FC",
                "+Opiece.tga",
                "+SR33",
                "+ER48",
                "+SC1",
                "+EC32"
            ]
        );
        let frame = task_arguments(Piece::Frame(3), &render(8, 8, 32), &[], "a.pov");
        assert_eq!(frame[frame.len() - 2..], ["+SF3", "+EF3"]);
    }

    #[test]
    fn the_controller_reads_every_tile_back_from_its_task() {
        let options = render(160, 120, 32);
        // The user's own size switches come first and are overridden by the tool's.
        let user = ["+W10".to_string(), "+H10".to_string()];
        for piece in pieces(&options, Some(12)) {
            let Piece::Tile(rect) = piece else {
                panic!("a still picture is cut into tiles");
            };
            let tile =
                xgrid_image::povray::task_tile(&task_arguments(piece, &options, &user, "s.pov"));
            assert_eq!(
                tile.map(|t| (t.width, t.height, t.rect)),
                Some((160, 120, rect))
            );
        }
        let frame = task_arguments(Piece::Frame(2), &options, &[], "s.pov");
        assert_eq!(xgrid_image::povray::task_tile(&frame), None);
    }

    #[test]
    fn the_last_tiles_handed_out_are_halves() {
        // 256x256 in blocks of 16, about 6 tiles: four quadrants (in spread order), the
        // last two of them split in two, the halves at the end.
        let quadrants = spread(&tile_rects(&render(256, 256, 16), 4));
        let tiles = pieces(&render(256, 256, 16), Some(6));
        let rects: Vec<Rect> = tiles
            .iter()
            .map(|p| match p {
                Piece::Tile(rect) => *rect,
                Piece::Frame(_) => panic!("a still picture is cut into tiles"),
            })
            .collect();
        assert_eq!(rects.len(), 6);
        assert_eq!(rects[..2], quadrants[..2]);
        let half = |q: Rect| Rect {
            bottom: q.top + 64,
            ..q
        };
        let other_half = |q: Rect| Rect {
            top: q.top + 64,
            ..q
        };
        assert_eq!(
            rects[2..],
            [
                half(quadrants[2]),
                half(quadrants[3]),
                other_half(quadrants[2]),
                other_half(quadrants[3])
            ]
        );
        // A tile of one block stays whole; a wide tile is cut across.
        let one = Rect {
            top: 0,
            left: 0,
            bottom: 16,
            right: 16,
        };
        assert_eq!(split_the_last(&[one, one, one], 16), [one, one, one]);
        assert_eq!(split_the_last(&[one], 16), [one]);
        let wide = Rect {
            top: 0,
            left: 0,
            bottom: 16,
            right: 48,
        };
        assert_eq!(
            split_the_last(&[wide], 16)
                .iter()
                .map(|r| (r.left, r.right))
                .collect::<Vec<_>>(),
            [(0, 48)],
            "one tile alone is not split"
        );
        let split = split_the_last(&[wide, wide, wide], 16);
        assert_eq!(
            split.iter().map(|r| (r.left, r.right)).collect::<Vec<_>>(),
            [(0, 48), (0, 48), (0, 16), (16, 48)]
        );
        let split = split_the_last(&[wide, wide], 16);
        assert_eq!(split.len(), 3);
    }

    #[test]
    fn frames_are_interleaved() {
        let mut options = render(8, 8, 32);
        options.frames = Some(Frames {
            first: 1,
            last: 4,
            final_frame: 4,
        });
        assert_eq!(
            pieces(&options, None),
            [
                Piece::Frame(1),
                Piece::Frame(4),
                Piece::Frame(3),
                Piece::Frame(2)
            ]
        );
    }

    proptest! {
        #[test]
        fn tiles_cover_the_image_exactly_once(
            width in 1usize..700, height in 1usize..500, block in 1usize..70, target in 1usize..80
        ) {
            let options = render(width, height, block);
            let rects: Vec<Rect> = pieces(&options, Some(target))
                .into_iter()
                .filter_map(|p| match p {
                    Piece::Tile(rect) => Some(rect),
                    Piece::Frame(_) => None,
                })
                .collect();
            let mut covered = vec![0u8; width * height];
            for r in &rects {
                prop_assert!(r.top % block == 0 && r.left % block == 0);
                prop_assert!(r.top < r.bottom && r.left < r.right);
                for row in r.top..r.bottom {
                    for col in r.left..r.right {
                        covered[row * width + col] += 1;
                    }
                }
            }
            prop_assert!(covered.iter().all(|&c| c == 1));
            let mut order: Vec<usize> = spread(&(0..rects.len()).collect::<Vec<_>>());
            order.sort_unstable();
            prop_assert_eq!(order, (0..rects.len()).collect::<Vec<_>>());
        }
    }
}
