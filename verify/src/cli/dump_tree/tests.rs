//! Tests of `dump_tree`.

use super::*;
use crate::runner::{run, RunOptions};
use crate::script::parse;

fn world_of(text: &str) -> crate::world::World {
    let report = run(&parse(text).expect("parses"), RunOptions::default());
    assert!(report.passed(), "{report}");
    report.world.expect("the run has a world")
}

#[test]
fn a_subvolume_dump_has_btrfs_headers_and_decoded_items() {
    let world = world_of(
        "subvol create vol\nmkdir vol/d\nwrite vol/d/f 0 \"hello\"\nsetxattr vol/d/f user.k \"v\"\nsymlink d/f vol/l\ncommit\n",
    );
    let root_id = resolve_tree(&world.fs, "vol").expect("vol exists");
    let dump = dump_tree(&world.fs, root_id).expect("dumps");
    assert!(dump.starts_with(&format!("file tree key ({root_id} ROOT_ITEM 0) \n")));
    for expected in [
        "\titem 0 key (256 INODE_ITEM 0) itemoff ",
        "\t\tblock group 0 mode 40755 links 1 uid 0 gid 0 rdev 0\n",
        "\t\tlocation key (257 INODE_ITEM 0) type DIR\n",
        "\t\tname: f\n",
        "\t\tname: user.k\n\t\tdata v\n",
        "type 0 (inline)\n\t\tinline extent data size 3 ram_bytes 3",
        "type 1 (regular)\n\t\textent data disk byte ",
        "index 3 namelen 1 name: l\n",
        "\t\tlocation key (0 UNKNOWN.0 0) type XATTR\n",
        "location key (259 INODE_ITEM 0) type SYMLINK",
        "flags 0x1(WRITTEN) backref revision 1\n",
    ] {
        assert!(dump.contains(expected), "missing {expected:?} in\n{dump}");
    }
    let leaves = dump
        .lines()
        .filter(|line| line.starts_with("leaf "))
        .count();
    let nodes = dump
        .lines()
        .filter(|line| line.starts_with("node "))
        .count();
    assert!(
        leaves >= 4,
        "a tiny-geometry tree of 9+ items spans leaves\n{dump}"
    );
    assert!(nodes >= 2, "and a node above them\n{dump}");
    assert!(
        dump.contains(" level 1 items "),
        "node header names its level\n{dump}"
    );
}

#[test]
fn the_root_tree_holds_root_items_and_names() {
    let world = world_of("subvol create vol\nsnapshot vol snap ro\ncommit\n");
    let dump = dump_tree(&world.fs, resolve_tree(&world.fs, "root").unwrap()).unwrap();
    assert!(dump.starts_with("root tree\n"), "{dump}");
    assert!(dump.contains("key (FS_TREE ROOT_REF 256)"), "{dump}");
    assert!(dump.contains("\t\troot ref name vol\n"), "{dump}");
    assert!(dump.contains("flags 0x1(RDONLY) refs 1"), "{dump}");
}

#[test]
fn itemoff_follows_btrfs_leaf_layout() {
    let world = world_of("subvol create vol\ncommit\n");
    let dump = dump_tree(&world.fs, resolve_tree(&world.fs, "vol").unwrap()).unwrap();
    let nodesize = world.fs.geometry().nodesize_bytes;
    let first_item = format!(
        "\titem 0 key (256 INODE_ITEM 0) itemoff {} itemsize 160\n",
        nodesize - HEADER_BYTES - 160
    );
    assert!(dump.contains(&first_item), "{dump}");
}

#[test]
fn unknown_tree_names_are_errors_naming_the_trees() {
    let world = world_of("subvol create vol\n");
    let error = resolve_tree(&world.fs, "nope").unwrap_err();
    assert!(error.contains("vol (256)"), "{error}");
    assert!(resolve_tree(&world.fs, "999").is_err());
    assert_eq!(resolve_tree(&world.fs, "fs"), Ok(objectid::FS_TREE));
}
