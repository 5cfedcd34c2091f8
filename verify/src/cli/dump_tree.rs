//! `cowproof run SCRIPT --dump-tree NAME`: prints one tree of the final world in the
//! layout of `btrfs inspect-internal dump-tree` (btrfs-progs `btrfs_print_tree()` and
//! `btrfs_print_leaf()`), so a btrfs developer reads it as they read a real image:
//! a `node`/`leaf` header pair per block, a `key (...) block B gen G` line per node slot,
//! and per leaf item its key, `itemoff`, `itemsize` and the decoded payload.
//!
//! Blocks are read as the running transaction sees them: through the extent-buffer
//! cache when the bytenr is mapped there (dirty and re-initialised blocks included),
//! from the device otherwise. Nothing is loaded into the cache: dumping never changes
//! the world. The walk is depth first, children in slot order, as dump-tree's.
//!
//! Differences from btrfs-progs, all from what the engine stores (docs/fuzzing.md):
//! no `fs uuid`/`chunk uuid` lines (the engine has no devices or chunks), times as
//! `seconds.nanoseconds` without a local-time rendering (output must not depend on the
//! time zone), root items with only the fields the engine keeps, ROOT_REF and
//! ROOT_BACKREF with only the name. `itemoff` and leaf `free space` are computed for
//! btrfs's leaf layout (a 101-byte header, 25-byte item headers, data packed from the
//! end), which the engine's packed data vector maps onto one to one.
//!
//! Invariants: untrusted item bytes never panic the dump (a payload that does not decode
//! is printed as malformed); the walk is bounded by the tree levels: a child whose level
//! is not its parent's minus one is reported and not followed.

use cowproof_engine::extent_buffer::{Body, NodeSlot, SharedContent, HEADER_FLAG_RELOC};
use cowproof_engine::extent_buffer::{Leaf, HEADER_FLAG_WRITTEN};
use cowproof_engine::fs::format::{file_type, DirItem, InodeItem, InodeRef, Timespec};
use cowproof_engine::items::{FileExtentItem, RootItem};
use cowproof_engine::items::{FILE_EXTENT_INLINE, FILE_EXTENT_PREALLOC, ROOT_SUBVOL_RDONLY};
use cowproof_engine::key::{item_type, item_type_name, objectid};
use cowproof_engine::{FsInfo, Key};
use std::fmt::Write as _;

/// `sizeof(struct btrfs_header)`.
pub const HEADER_BYTES: u64 = 101;
/// `sizeof(struct btrfs_item)`: a leaf item header.
pub const ITEM_HEADER_BYTES: u64 = 25;

/// The root id a `--dump-tree` name refers to: a subvolume or snapshot name, `root`
/// (the root tree), `fs` (FS_TREE), or a tree id in decimal.
pub fn resolve_tree(fs: &FsInfo, name: &str) -> Result<u64, String> {
    let root_id = match name {
        "root" => Some(objectid::ROOT_TREE),
        "fs" => Some(objectid::FS_TREE),
        _ => fs
            .subvolume_id(name)
            .ok()
            .or_else(|| name.parse::<u64>().ok()),
    };
    match root_id {
        Some(root_id) if fs.root(root_id).is_ok() => Ok(root_id),
        _ => Err(format!(
            "no tree named `{name}` (trees: root, fs, {})",
            known_trees(fs)
        )),
    }
}

fn known_trees(fs: &FsInfo) -> String {
    let mut names: Vec<String> = fs
        .subvolumes()
        .map(|(name, root_id)| format!("{name} ({root_id})"))
        .collect();
    if names.is_empty() {
        names.push("no subvolumes".to_string());
    }
    names.join(", ")
}

/// `--dump-tree NAME`: the dump of the tree `name` resolves to.
pub fn resolve_and_dump(fs: &FsInfo, name: &str) -> Result<String, super::CliError> {
    resolve_tree(fs, name)
        .and_then(|root_id| dump_tree(fs, root_id))
        .map_err(|reason| super::CliError::Unavailable(format!("--dump-tree: {reason}")))
}

/// A block as the running transaction sees it: the cache's object if the bytenr is
/// mapped, else the device's copy.
pub fn block_now(fs: &FsInfo, bytenr: u64) -> Option<SharedContent> {
    match fs.cache().find(bytenr) {
        Some(handle) => Some(fs.cache().content(handle).clone()),
        None => fs.device().read_block(bytenr),
    }
}

/// The whole dump of tree `root_id`, as `btrfs inspect-internal dump-tree -t ID` prints
/// it.
pub fn dump_tree(fs: &FsInfo, root_id: u64) -> Result<String, String> {
    let root = fs.root(root_id).map_err(|error| error.to_string())?;
    let mut out = String::new();
    let _ = writeln!(out, "{}", tree_title(root_id));
    dump_block(fs, root.node.bytenr, None, &mut out);
    Ok(out)
}

/// The line dump-tree prints before a tree.
fn tree_title(root_id: u64) -> String {
    match root_id {
        objectid::ROOT_TREE => "root tree".to_string(),
        objectid::FS_TREE => "fs tree key (FS_TREE ROOT_ITEM 0) ".to_string(),
        _ => format!("file tree key ({root_id} ROOT_ITEM 0) "),
    }
}

/// Prints the block at `bytenr` and, for a node, its children. `expected_level` is the
/// level its parent says it has.
fn dump_block(fs: &FsInfo, bytenr: u64, expected_level: Option<u8>, out: &mut String) {
    let Some(content) = block_now(fs, bytenr) else {
        let _ = writeln!(out, "block {bytenr} is neither cached nor on the device");
        return;
    };
    let level = content.header.level;
    if expected_level.is_some_and(|expected| expected != level) {
        let _ = writeln!(
            out,
            "block {bytenr} has level {level}, its parent expects {}; not followed",
            expected_level.unwrap_or_default()
        );
        return;
    }
    let geometry = fs.geometry();
    match &content.body {
        Body::Node(slots) => {
            let free = geometry.node_pointers_max.saturating_sub(slots.len());
            write_header(out, "node", &content, Some(level), free as u64);
            slots.iter().for_each(|slot| write_node_slot(out, slot));
            for slot in slots {
                dump_block(fs, slot.blockptr, level.checked_sub(1), out);
            }
        }
        Body::Leaf(leaf) => {
            let used = ITEM_HEADER_BYTES * leaf.nritems() as u64 + leaf.data_bytes() as u64;
            let free = geometry
                .nodesize_bytes
                .saturating_sub(HEADER_BYTES)
                .saturating_sub(used);
            write_header(out, "leaf", &content, None, free);
            write_leaf_items(out, leaf, geometry.nodesize_bytes);
        }
    }
}

fn write_header(
    out: &mut String,
    kind: &str,
    content: &SharedContent,
    level: Option<u8>,
    free: u64,
) {
    let header = &content.header;
    let level_words = level.map_or(String::new(), |level| format!(" level {level}"));
    let _ = writeln!(
        out,
        "{kind} {}{level_words} items {} free space {free} generation {} owner {}",
        header.bytenr,
        content.nritems(),
        header.generation,
        objectid_name(header.owner)
    );
    let _ = writeln!(
        out,
        "{kind} {} flags {} backref revision 1",
        header.bytenr,
        header_flags(header.flags)
    );
}

fn write_node_slot(out: &mut String, slot: &NodeSlot) {
    let _ = writeln!(
        out,
        "\tkey {} block {} gen {}",
        key_words(&slot.key),
        slot.blockptr,
        slot.generation
    );
}

fn write_leaf_items(out: &mut String, leaf: &Leaf, nodesize_bytes: u64) {
    let data_area_bytes = nodesize_bytes.saturating_sub(HEADER_BYTES);
    for (slot, item) in leaf.items().iter().enumerate() {
        let end = u64::from(item.offset) + u64::from(item.size);
        let _ = writeln!(
            out,
            "\titem {slot} key {} itemoff {} itemsize {}",
            key_words(&item.key),
            data_area_bytes.saturating_sub(end),
            item.size
        );
        write_payload(out, &item.key, leaf.item_data(slot));
    }
}

/// `(objectid TYPE offset)` with btrfs's names for the well-known objectids, and
/// `UNKNOWN.N` for a type the engine has no name for, as btrfs-progs prints it.
pub fn key_words(key: &Key) -> String {
    let type_name = match item_type_name(key.item_type) {
        name if name.starts_with("TYPE_") => format!("UNKNOWN.{}", key.item_type),
        name => name,
    };
    format!(
        "({} {type_name} {})",
        objectid_name(key.objectid),
        key.offset
    )
}

/// btrfs's name for a well-known objectid, the number otherwise.
pub fn objectid_name(objectid: u64) -> String {
    match objectid {
        objectid::ROOT_TREE => "ROOT_TREE".to_string(),
        objectid::EXTENT_TREE => "EXTENT_TREE".to_string(),
        objectid::FS_TREE => "FS_TREE".to_string(),
        other => other.to_string(),
    }
}

fn header_flags(flags: u64) -> String {
    let mut names = Vec::new();
    if flags & HEADER_FLAG_WRITTEN != 0 {
        names.push("WRITTEN");
    }
    if flags & HEADER_FLAG_RELOC != 0 {
        names.push("RELOC");
    }
    let names = if names.is_empty() {
        "none".to_string()
    } else {
        names.join("|")
    };
    format!("{flags:#x}({names})")
}

fn write_payload(out: &mut String, key: &Key, data: &[u8]) {
    let written = match key.item_type {
        item_type::INODE_ITEM => InodeItem::decode(data).map(|item| inode_item(out, &item)),
        item_type::INODE_REF => InodeRef::decode_all(data).map(|refs| inode_refs(out, &refs)),
        item_type::DIR_ITEM | item_type::DIR_INDEX | item_type::XATTR_ITEM => {
            DirItem::decode_all(data).map(|items| dir_items(out, &items))
        }
        item_type::EXTENT_DATA => FileExtentItem::decode(data).map(|item| extent_data(out, &item)),
        item_type::ROOT_ITEM => RootItem::decode(data).map(|item| root_item(out, &item)),
        item_type::ROOT_REF | item_type::ROOT_BACKREF => std::str::from_utf8(data)
            .ok()
            .map(|name| root_ref(out, key.item_type, name)),
        item_type::ORPHAN_ITEM => {
            out.push_str("\t\torphan item\n");
            Some(())
        }
        _ => {
            let _ = writeln!(out, "\t\tpayload of {} bytes", data.len());
            Some(())
        }
    };
    if written.is_none() {
        let _ = writeln!(
            out,
            "\t\tmalformed {} payload ({} bytes)",
            item_type_name(key.item_type),
            data.len()
        );
    }
}

fn time_words(time: Timespec) -> String {
    format!("{}.{}", time.sec, time.nsec)
}

fn inode_item(out: &mut String, item: &InodeItem) {
    let _ = writeln!(
        out,
        "\t\tgeneration {} transid {} size {} nbytes {}",
        item.generation, item.transid, item.size, item.nbytes
    );
    let _ = writeln!(
        out,
        "\t\tblock group {} mode {:o} links {} uid {} gid {} rdev {}",
        item.block_group, item.mode, item.nlink, item.uid, item.gid, item.rdev
    );
    let flags = if item.flags == 0 { "(none)" } else { "" };
    let _ = writeln!(
        out,
        "\t\tsequence {} flags {:#x}{flags}",
        item.sequence, item.flags
    );
    for (name, time) in [
        ("atime", item.atime),
        ("ctime", item.ctime),
        ("mtime", item.mtime),
        ("otime", item.otime),
    ] {
        let _ = writeln!(out, "\t\t{name} {}", time_words(time));
    }
}

fn inode_refs(out: &mut String, refs: &[InodeRef]) {
    for inode_ref in refs {
        let _ = writeln!(
            out,
            "\t\tindex {} namelen {} name: {}",
            inode_ref.index,
            inode_ref.name.len(),
            String::from_utf8_lossy(&inode_ref.name)
        );
    }
}

fn file_type_name(file_type: u8) -> String {
    let name = match file_type {
        file_type::REG_FILE => "FILE",
        file_type::DIR => "DIR",
        file_type::CHRDEV => "CHRDEV",
        file_type::BLKDEV => "BLKDEV",
        file_type::FIFO => "FIFO",
        file_type::SOCK => "SOCK",
        file_type::SYMLINK => "SYMLINK",
        file_type::XATTR => "XATTR",
        other => return format!("UNKNOWN.{other}"),
    };
    name.to_string()
}

fn dir_items(out: &mut String, items: &[DirItem]) {
    for item in items {
        let _ = writeln!(
            out,
            "\t\tlocation key {} type {}",
            key_words(&item.location),
            file_type_name(item.file_type)
        );
        let _ = writeln!(
            out,
            "\t\ttransid {} data_len {} name_len {}",
            item.transid,
            item.data.len(),
            item.name.len()
        );
        let _ = writeln!(out, "\t\tname: {}", String::from_utf8_lossy(&item.name));
        if !item.data.is_empty() {
            let _ = writeln!(out, "\t\tdata {}", String::from_utf8_lossy(&item.data));
        }
    }
}

fn extent_data(out: &mut String, item: &FileExtentItem) {
    let type_name = match item.extent_type {
        FILE_EXTENT_INLINE => "inline",
        FILE_EXTENT_PREALLOC => "prealloc",
        _ => "regular",
    };
    let _ = writeln!(
        out,
        "\t\tgeneration {} type {} ({type_name})",
        item.generation, item.extent_type
    );
    if item.extent_type == FILE_EXTENT_INLINE {
        let _ = writeln!(
            out,
            "\t\tinline extent data size {} ram_bytes {} compression 0 (none)",
            item.inline_data.len(),
            item.ram_bytes
        );
        return;
    }
    let _ = writeln!(
        out,
        "\t\textent data disk byte {} nr {}",
        item.disk_bytenr, item.disk_num_bytes
    );
    let _ = writeln!(
        out,
        "\t\textent data offset {} nr {} ram {}",
        item.offset, item.num_bytes, item.ram_bytes
    );
    out.push_str("\t\textent compression 0 (none)\n");
}

fn uuid_words(uuid: &[u8; 16]) -> String {
    let hex: String = uuid.iter().map(|byte| format!("{byte:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

fn root_item(out: &mut String, item: &RootItem) {
    let flags = if item.flags & ROOT_SUBVOL_RDONLY != 0 {
        "RDONLY"
    } else {
        "none"
    };
    let _ = writeln!(
        out,
        "\t\tgeneration {} bytenr {} level {}",
        item.generation, item.bytenr, item.level
    );
    let _ = writeln!(
        out,
        "\t\tlast_snapshot {} flags {:#x}({flags}) refs {}",
        item.last_snapshot, item.flags, item.refs
    );
    let _ = writeln!(out, "\t\tuuid {}", uuid_words(&item.uuid));
    let _ = writeln!(out, "\t\tparent_uuid {}", uuid_words(&item.parent_uuid));
    let _ = writeln!(out, "\t\treceived_uuid {}", uuid_words(&item.received_uuid));
    let _ = writeln!(
        out,
        "\t\tctransid {} otransid {} stransid {} rtransid {}",
        item.ctransid, item.otransid, item.stransid, item.rtransid
    );
}

fn root_ref(out: &mut String, item_type: u8, name: &str) {
    let kind = if item_type == item_type::ROOT_REF {
        "root ref"
    } else {
        "root backref"
    };
    let _ = writeln!(out, "\t\t{kind} name {name}");
}

#[cfg(test)]
mod tests;
