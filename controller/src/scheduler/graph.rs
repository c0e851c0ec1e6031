//! Cycle finding in dependency graphs (`dependsOnTasks`, `dependsOnJobs`): a cycle means the
//! nodes on it wait on each other forever.

/// Walks the graph depth first from every node in index order and returns each cycle met,
/// as its nodes in walk order; stops after the first when `first_only`. Nodes for which
/// `include` is false are left out with their edges. `edges[n]` are the nodes `n` waits on.
///
/// Every node that waits on a cycle is reached, but a node reached through an already
/// finished part of the walk is not reported again: callers only need to know that some
/// cycle exists and which nodes are on it.
pub(super) fn cycles(
    edges: &[Vec<usize>],
    include: impl Fn(usize) -> bool,
    first_only: bool,
) -> Vec<Vec<usize>> {
    let mut marks = vec![Mark::New; edges.len()];
    let mut found = Vec::new();
    // (node, index of its next edge to follow)
    let mut path: Vec<(usize, usize)> = Vec::new();
    for root in 0..edges.len() {
        if !include(root) || marks.get(root) != Some(&Mark::New) {
            continue;
        }
        set(&mut marks, root, Mark::Open);
        path.push((root, 0));
        while let Some(top) = path.last_mut() {
            let (node, next) = *top;
            let Some(&successor) = edges.get(node).and_then(|out| out.get(next)) else {
                set(&mut marks, node, Mark::Done);
                path.pop();
                continue;
            };
            top.1 += 1;
            if !include(successor) {
                continue;
            }
            match marks.get(successor) {
                Some(Mark::New) => {
                    set(&mut marks, successor, Mark::Open);
                    path.push((successor, 0));
                }
                Some(Mark::Open) => {
                    let start = path
                        .iter()
                        .position(|&(on_path, _)| on_path == successor)
                        .unwrap_or(0);
                    found.push(path.iter().skip(start).map(|&(n, _)| n).collect());
                    if first_only {
                        return found;
                    }
                }
                Some(Mark::Done) | None => {}
            }
        }
    }
    found
}

/// How far the walk has got with a node.
#[derive(Clone, Copy, PartialEq)]
enum Mark {
    New,
    /// On the current path: meeting it again closes a cycle.
    Open,
    Done,
}

fn set(marks: &mut [Mark], node: usize, mark: Mark) {
    if let Some(slot) = marks.get_mut(node) {
        *slot = mark;
    }
}

/// Turns `cycle` so that it starts at its least member by `less`, keeping its direction.
pub(super) fn rotate_to_least<T>(cycle: &mut [T], less: impl Fn(&T, &T) -> bool) {
    let mut least = 0;
    for (index, member) in cycle.iter().enumerate() {
        if cycle
            .get(least)
            .is_some_and(|current| less(member, current))
        {
            least = index;
        }
    }
    cycle.rotate_left(least);
}

#[cfg(test)]
mod tests {
    use super::{cycles, rotate_to_least};

    #[test]
    fn acyclic_graph_has_none() {
        let edges = vec![vec![1, 2], vec![2], vec![]];
        assert!(cycles(&edges, |_| true, false).is_empty());
    }

    #[test]
    fn finds_self_loop_and_longer_cycle() {
        // 0 → 1 → 2 → 0, 3 → 3, 4 → 0 (waits on the cycle, not on it)
        let edges = vec![vec![1], vec![2], vec![0], vec![3], vec![0]];
        assert_eq!(
            cycles(&edges, |_| true, false),
            vec![vec![0, 1, 2], vec![3]]
        );
        assert_eq!(cycles(&edges, |_| true, true), vec![vec![0, 1, 2]]);
    }

    #[test]
    fn excluded_nodes_break_cycles() {
        let edges = vec![vec![1], vec![0], vec![2]];
        assert!(cycles(&edges, |node| node == 0, false).is_empty());
        assert_eq!(cycles(&edges, |node| node != 1, false), vec![vec![2]]);
    }

    #[test]
    fn rotation_keeps_direction() {
        let mut cycle = vec![5, 9, 2, 7];
        rotate_to_least(&mut cycle, |a, b| a < b);
        assert_eq!(cycle, [2, 7, 5, 9]);
    }
}
