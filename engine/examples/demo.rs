//! A short demonstration of the mechanism behind both seed races, at the engine level:
//! a reader holding a commit root's extent buffer sees that very object re-initialised
//! for another tree once snapshot creation has COWed the root and the freed bytenr is
//! allocated again, while a clone taken beforehand is unaffected. Ends with fsck.
//!
//! Run: `cargo run -p cowproof-engine --example demo`

use cowproof_engine::extent_buffer::BlockContent;
use cowproof_engine::{FsInfo, Geometry, Key, SendPolicy};

fn describe(content: &BlockContent) -> String {
    let header = &content.header;
    format!(
        "bytenr {} generation {} owner {} level {} first key {}",
        header.bytenr,
        header.generation,
        header.owner,
        header.level,
        content
            .first_key()
            .map_or("-".to_string(), |key| key.to_string())
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut fs = FsInfo::mkfs(Geometry::tiny(), SendPolicy::Unprotected)?;
    let volume = fs.create_subvolume("vol")?;
    for objectid in 256..272 {
        fs.insert_item(volume, Key::new(objectid, 1, 0), b"inode")?;
    }
    let snapshot = fs.snapshot("vol", "snap", true)?;
    let commit_root = fs.commit_root_of(snapshot)?;
    println!(
        "read-only snapshot `snap` (root {snapshot}) committed at generation {}",
        fs.generation()
    );

    let held = fs.read_tree_block(snapshot, commit_root, None)?;
    fs.cache_mut().hold(held);
    let clone = fs.cache().clone_content(held);
    println!(
        "send holds the commit root object:  {}",
        describe(fs.cache().content(held))
    );

    fs.snapshot("snap", "snap-of-snap", true)?;
    println!(
        "snapshot of `snap` COWed its root; commit root now {} and {} is free again",
        fs.commit_root_of(snapshot)?.bytenr,
        commit_root.bytenr
    );

    fs.insert_item(volume, Key::new(999, 1, 0), b"a write elsewhere")?;
    println!(
        "after a write to `vol`, the held object: {}",
        describe(fs.cache().content(held))
    );
    println!(
        "a clone taken before (clone-root fix): {}",
        describe(&clone)
    );
    println!(
        "held-buffer reuses counted by the engine: {:?}",
        fs.marks.iter().collect::<Vec<_>>()
    );
    fs.cache_mut().release(held);

    fs.commit_transaction()?;
    let report = fs.check()?;
    println!(
        "fsck: {} tree blocks, {} items, all invariants hold",
        report.tree_blocks, report.items
    );
    Ok(())
}
