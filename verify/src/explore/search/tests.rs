use super::*;
use crate::race::Race;
use cowproof_engine::Policy;

/// Every path of up to `depth` letters from `world`, depth-first in alphabet order.
fn paths(race: Race, world: &World, depth: usize, prefix: &mut Vec<Op>, out: &mut Vec<Vec<Op>>) {
    out.push(prefix.clone());
    if depth == 0 {
        return;
    }
    for &letter in race.alphabet() {
        let mut child = world.clone();
        if let Some((op, _)) = letter.apply(&mut child).expect("a valid operation") {
            prefix.push(op);
            paths(race, &child, depth - 1, prefix, out);
            prefix.pop();
        }
    }
}

/// The snapshot race's initial world under `concurrent`, and every path of up to two
/// letters from it.
fn snapshot_paths_of_two() -> (World, Vec<Vec<Op>>) {
    let race = Race::Snapshot;
    let initial = race
        .initial_world(Policy::CONCURRENT)
        .expect("the setup runs");
    let mut all = Vec::new();
    paths(race, &initial, 2, &mut Vec::new(), &mut all);
    (initial, all)
}

#[test]
fn the_replayer_rebuilds_the_world_a_replay_from_the_initial_world_gives() {
    let (initial, all) = snapshot_paths_of_two();
    // Forwards (long shared prefixes, as a level's chunk has), then backwards (every
    // step abandons most of the path), so both the reuse and the rebuild are used.
    let order: Vec<&Vec<Op>> = all.iter().chain(all.iter().rev()).collect();
    let mut replayer = Replayer::new(&initial);
    let mut reused = 0;
    for path in order {
        let common = replayer
            .path
            .iter()
            .zip(path.iter())
            .take_while(|(kept, wanted)| kept == wanted)
            .count();
        reused += common;
        let ops: Vec<&Op> = path.iter().collect();
        let rebuilt = fingerprint(replayer.world_at(&ops).expect("the path replays"));
        let mut replayed = initial.clone();
        for op in path {
            replayed.apply(op).expect("the path replays");
        }
        assert_eq!(rebuilt, fingerprint(&replayed), "{path:?}");
    }
    assert!(all.len() > 20, "only {} paths", all.len());
    assert!(
        reused > all.len(),
        "the prefixes were not reused ({reused})"
    );
}

/// A trail is its parent's path plus one operation, and siblings share the parent's
/// links rather than copies of them.
#[test]
fn trails_share_their_parents_links() {
    let (_, all) = snapshot_paths_of_two();
    let longest = all.iter().max_by_key(|path| path.len()).expect("some path");
    assert!(longest.len() >= 2, "{longest:?}");
    let mut trail = Trail::default();
    for op in longest {
        trail = trail.then(op.clone());
    }
    assert_eq!(trail.len(), longest.len());
    assert_eq!(&trail.to_vec(), longest);
    let parent = trail.0.as_ref().expect("a link").parent.clone();
    let sibling = parent.then(longest[0].clone());
    fn parent_link(trail: &Trail) -> &std::sync::Arc<TrailLink> {
        let link = trail.0.as_ref().expect("a link");
        link.parent.0.as_ref().expect("a parent")
    }
    assert!(std::sync::Arc::ptr_eq(
        parent_link(&trail),
        parent_link(&sibling)
    ));
    assert_eq!(sibling.len(), longest.len());
    assert_eq!(Trail::default().to_vec(), Vec::<Op>::new());
}
