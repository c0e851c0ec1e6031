//! What marks a job as an `xgrid-povray` render and where each of its tasks' tiles lies.
//!
//! Nothing is added to the job specification for this: the job's `applicationIdentifier`
//! names the tool, and each task's POV-Ray command line already says the picture's size
//! (`+W`, `+H`) and the rows and columns the task renders (`+SR/+ER/+SC/+EC`). Both are
//! ordinary fields of an Xgrid job, kept as they are by any controller (Apple's included)
//! and by this one's store, so the controller can tell from a stored job alone how to put
//! its finished tiles together.

use crate::Rect;

/// The `applicationIdentifier` of the jobs `xgrid-povray` submits.
pub const APPLICATION_IDENTIFIER: &str = "org.xgrid.povray";
/// The file each task writes (POV-Ray adds the frame number in an animation).
pub const TASK_OUTPUT: &str = "piece.tga";

/// The picture a task renders a part of, and that part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskTile {
    pub width: usize,
    pub height: usize,
    pub rect: Rect,
}

/// The tile a task's POV-Ray `arguments` render, from the last `+W`, `+H`, `+SR`, `+ER`,
/// `+SC` and `+EC` switches with whole-number values (the last one is the one POV-Ray
/// obeys). `None` when one is missing (a frame of an animation renders the whole picture)
/// or the area does not fit in the picture.
pub fn task_tile(arguments: &[String]) -> Option<TaskTile> {
    let mut values: [Option<usize>; 6] = [None; 6];
    const SWITCHES: [&str; 6] = ["W", "H", "SR", "ER", "SC", "EC"];
    for argument in arguments {
        let Some(switch) = argument.strip_prefix('+') else {
            continue;
        };
        for (slot, name) in values.iter_mut().zip(SWITCHES) {
            let value = switch
                .get(..name.len())
                .filter(|head| head.eq_ignore_ascii_case(name))
                .and_then(|_| switch.get(name.len()..))
                .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|digits| digits.parse().ok());
            if value.is_some() {
                *slot = value;
            }
        }
    }
    let [Some(width), Some(height), Some(first_row), Some(last_row), Some(first_column), Some(last_column)] =
        values
    else {
        return None;
    };
    let fits = |first: usize, last: usize, side: usize| 1 <= first && first <= last && last <= side;
    if !fits(first_row, last_row, height) || !fits(first_column, last_column, width) {
        return None;
    }
    Some(TaskTile {
        width,
        height,
        // POV-Ray counts rows and columns from 1, both ends included.
        rect: Rect {
            top: first_row - 1,
            bottom: last_row,
            left: first_column - 1,
            right: last_column,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn the_last_whole_number_of_each_switch_counts() {
        let tile = task_tile(&words(
            "+WT1 +W100 +A0.3 +W160 +H120 +BS32 +Iscene.pov -D +Opiece.tga +SR33 +ER64 +SC1 +EC32",
        ));
        assert_eq!(
            tile,
            Some(TaskTile {
                width: 160,
                height: 120,
                rect: Rect {
                    top: 32,
                    bottom: 64,
                    left: 0,
                    right: 32
                }
            })
        );
        // Lower case works as in POV-Ray; +WT and +HI-like switches are not sizes.
        let lower = task_tile(&words("+w8 +h4 +sr1 +er4 +sc5 +ec8 +WT2"));
        assert_eq!(lower.map(|t| (t.width, t.rect.left)), Some((8, 4)));
    }

    #[test]
    fn frames_and_areas_outside_the_picture_are_no_tiles() {
        assert_eq!(task_tile(&words("+W64 +H48 +SF3 +EF3 +Opiece.tga")), None);
        assert_eq!(task_tile(&words("+W64 +H48 +SR1 +ER49 +SC1 +EC64")), None);
        assert_eq!(task_tile(&words("+W64 +H48 +SR0 +ER48 +SC1 +EC64")), None);
        assert_eq!(task_tile(&words("+W64 +H48 +SR9 +ER8 +SC1 +EC64")), None);
        // POV-Ray also takes fractions of the picture; the tool never writes them.
        assert_eq!(task_tile(&words("+W64 +H48 +SR0.5 +ER48 +SC1 +EC64")), None);
    }
}
