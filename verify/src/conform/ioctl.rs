//! The only `unsafe` code of cowproof: the btrfs and VFS ioctls `conform` issues on the
//! real mount, each a `#[repr(C)]` argument laid out as in the kernel's uapi headers
//! (`include/uapi/linux/fs.h`, `include/uapi/linux/btrfs.h`) and handed to rustix's
//! typed ioctl patterns. rustix has safe wrappers for the system calls conform needs
//! (`openat2`, the `*at` calls, xattrs) but none for these ioctls.
//!
//! Invariants: every ioctl is issued on a file descriptor the caller opened beneath the
//! mount (`openat2` with `RESOLVE_BENEATH`), never on a path; every argument struct has
//! the size the opcode encodes (asserted at compile time below); names are copied with a
//! length check and NUL-terminated; the one pointer passed to the kernel (send's clone
//! sources) borrows a slice that outlives the call.
//!
//! Mirrors: `btrfs_ioctl_subvol_create`, `btrfs_ioctl_snap_create_v2`,
//! `btrfs_ioctl_snap_destroy`, `btrfs_ioctl_ino_lookup`, `btrfs_ioctl_send`,
//! `btrfs_ioctl_subvol_getflags`, `btrfs_ioctl_subvol_setflags`, `ioctl_file_clone`
//! (FICLONERANGE) and `ioctl_file_dedupe_range` (FIDEDUPERANGE) in the kernel.

use rustix::fd::{AsRawFd, BorrowedFd};
use rustix::io::Errno as RawErrno;
use rustix::ioctl::{ioctl, opcode, Opcode, Setter, Updater};

/// `BTRFS_IOCTL_MAGIC`.
const BTRFS_IOCTL_MAGIC: u8 = 0x94;
/// `BTRFS_PATH_NAME_MAX`: the name field of `btrfs_ioctl_vol_args` holds this many bytes
/// plus a NUL.
const BTRFS_PATH_NAME_MAX: usize = 4087;
/// `BTRFS_SUBVOL_NAME_MAX`: the same for `btrfs_ioctl_vol_args_v2`.
const BTRFS_SUBVOL_NAME_MAX: usize = 4039;
/// `BTRFS_INO_LOOKUP_PATH_MAX`.
const BTRFS_INO_LOOKUP_PATH_MAX: usize = 4080;
/// `BTRFS_SUBVOL_RDONLY`.
const BTRFS_SUBVOL_RDONLY: u64 = 1 << 1;
/// `BTRFS_FIRST_FREE_OBJECTID`: the root directory of every subvolume.
const BTRFS_FIRST_FREE_OBJECTID: u64 = 256;

/// `struct btrfs_ioctl_vol_args`.
#[repr(C)]
struct VolumeArguments {
    fd: i64,
    name: [u8; BTRFS_PATH_NAME_MAX + 1],
}

/// `struct btrfs_ioctl_vol_args_v2` (the qgroup/devid unions left zero).
#[repr(C)]
struct VolumeArgumentsV2 {
    fd: i64,
    transid: u64,
    flags: u64,
    unused: [u64; 4],
    name: [u8; BTRFS_SUBVOL_NAME_MAX + 1],
}

/// `struct btrfs_ioctl_ino_lookup_args`.
#[repr(C)]
struct InoLookupArguments {
    treeid: u64,
    objectid: u64,
    name: [u8; BTRFS_INO_LOOKUP_PATH_MAX],
}

/// `struct btrfs_ioctl_send_args`.
#[repr(C)]
struct SendArguments {
    send_fd: i64,
    clone_sources_count: u64,
    clone_sources: *const u64,
    parent_root: u64,
    flags: u64,
    version: u32,
    reserved: [u8; 28],
}

/// `struct file_clone_range`.
#[repr(C)]
struct FileCloneRange {
    src_fd: i64,
    src_offset: u64,
    src_length: u64,
    dest_offset: u64,
}

/// `struct file_dedupe_range` (the header FIDEDUPERANGE's opcode encodes).
#[repr(C)]
struct FileDedupeRange {
    src_offset: u64,
    src_length: u64,
    dest_count: u16,
    reserved1: u16,
    reserved2: u32,
}

/// `struct file_dedupe_range_info`: one destination, filled in by the kernel.
#[repr(C)]
struct FileDedupeRangeInfo {
    dest_fd: i64,
    dest_offset: u64,
    bytes_deduped: u64,
    status: i32,
    reserved: u32,
}

/// A FIDEDUPERANGE request with exactly one destination, laid out as the kernel reads
/// it: the header, then `dest_count` (1) infos.
#[repr(C)]
struct DedupeOneRange {
    header: FileDedupeRange,
    info: FileDedupeRangeInfo,
}

/// `FILE_DEDUPE_RANGE_DIFFERS`.
const FILE_DEDUPE_RANGE_DIFFERS: i32 = 1;

const _: () = assert!(std::mem::size_of::<VolumeArguments>() == 4096);
const _: () = assert!(std::mem::size_of::<FileDedupeRange>() == 24);
const _: () = assert!(std::mem::size_of::<FileDedupeRangeInfo>() == 32);
const _: () = assert!(std::mem::size_of::<DedupeOneRange>() == 56);
const _: () = assert!(std::mem::size_of::<VolumeArgumentsV2>() == 4096);
const _: () = assert!(std::mem::size_of::<InoLookupArguments>() == 4096);
const _: () = assert!(std::mem::size_of::<SendArguments>() == 72);
const _: () = assert!(std::mem::size_of::<FileCloneRange>() == 32);

const BTRFS_IOC_SUBVOL_CREATE: Opcode = opcode::write::<VolumeArguments>(BTRFS_IOCTL_MAGIC, 14);
const BTRFS_IOC_SNAP_DESTROY: Opcode = opcode::write::<VolumeArguments>(BTRFS_IOCTL_MAGIC, 15);
const BTRFS_IOC_INO_LOOKUP: Opcode =
    opcode::read_write::<InoLookupArguments>(BTRFS_IOCTL_MAGIC, 18);
const BTRFS_IOC_SNAP_CREATE_V2: Opcode = opcode::write::<VolumeArgumentsV2>(BTRFS_IOCTL_MAGIC, 23);
const BTRFS_IOC_SEND: Opcode = opcode::write::<SendArguments>(BTRFS_IOCTL_MAGIC, 38);
const FICLONERANGE: Opcode = opcode::write::<FileCloneRange>(BTRFS_IOCTL_MAGIC, 13);
const FIDEDUPERANGE: Opcode = opcode::read_write::<FileDedupeRange>(BTRFS_IOCTL_MAGIC, 54);
const BTRFS_IOC_SUBVOL_GETFLAGS: Opcode = opcode::read::<u64>(BTRFS_IOCTL_MAGIC, 25);
const BTRFS_IOC_SUBVOL_SETFLAGS: Opcode = opcode::write::<u64>(BTRFS_IOCTL_MAGIC, 26);

/// Copies `name` into a NUL-terminated field; ENAMETOOLONG when it does not fit, EINVAL
/// for an embedded NUL (the kernel would see a shorter name).
fn copy_name<const N: usize>(name: &[u8]) -> Result<[u8; N], RawErrno> {
    if name.contains(&0) {
        return Err(RawErrno::INVAL);
    }
    if name.len() >= N {
        return Err(RawErrno::NAMETOOLONG);
    }
    let mut field = [0u8; N];
    field[..name.len()].copy_from_slice(name);
    Ok(field)
}

fn raw(fd: BorrowedFd<'_>) -> i64 {
    i64::from(fd.as_raw_fd())
}

/// `BTRFS_IOC_SUBVOL_CREATE`: a new subvolume `name` in `directory`.
pub fn subvolume_create(directory: BorrowedFd<'_>, name: &[u8]) -> Result<(), RawErrno> {
    let arguments = VolumeArguments {
        fd: 0,
        name: copy_name(name)?,
    };
    // SAFETY: the opcode is _IOW(0x94, 14, struct btrfs_ioctl_vol_args) and `arguments`
    // has that struct's layout and size (asserted above); the kernel only reads it.
    unsafe {
        ioctl(
            directory,
            Setter::<BTRFS_IOC_SUBVOL_CREATE, _>::new(arguments),
        )
    }
}

/// `BTRFS_IOC_SNAP_DESTROY`: deletes subvolume `name` of `directory`.
pub fn subvolume_delete(directory: BorrowedFd<'_>, name: &[u8]) -> Result<(), RawErrno> {
    let arguments = VolumeArguments {
        fd: 0,
        name: copy_name(name)?,
    };
    // SAFETY: _IOW(0x94, 15, struct btrfs_ioctl_vol_args); layout as above; read only.
    unsafe {
        ioctl(
            directory,
            Setter::<BTRFS_IOC_SNAP_DESTROY, _>::new(arguments),
        )
    }
}

/// `BTRFS_IOC_SNAP_CREATE_V2`: snapshot of the subvolume open as `source`, named `name`
/// in `directory`, read-only or writable.
pub fn snapshot_create(
    directory: BorrowedFd<'_>,
    source: BorrowedFd<'_>,
    name: &[u8],
    read_only: bool,
) -> Result<(), RawErrno> {
    let arguments = VolumeArgumentsV2 {
        fd: raw(source),
        transid: 0,
        flags: if read_only { BTRFS_SUBVOL_RDONLY } else { 0 },
        unused: [0; 4],
        name: copy_name(name)?,
    };
    // SAFETY: _IOW(0x94, 23, struct btrfs_ioctl_vol_args_v2); `arguments` has its layout
    // and size (asserted above) with the unions zeroed (no qgroup inherit pointer); the
    // kernel only reads it, and `source` stays open for the call.
    unsafe {
        ioctl(
            directory,
            Setter::<BTRFS_IOC_SNAP_CREATE_V2, _>::new(arguments),
        )
    }
}

/// The root id (tree id) of the subvolume whose root directory is open as `directory`
/// (`BTRFS_IOC_INO_LOOKUP` with tree id 0, as `btrfs inspect-internal rootid` does).
pub fn root_id(directory: BorrowedFd<'_>) -> Result<u64, RawErrno> {
    let mut arguments = InoLookupArguments {
        treeid: 0,
        objectid: BTRFS_FIRST_FREE_OBJECTID,
        name: [0; BTRFS_INO_LOOKUP_PATH_MAX],
    };
    // SAFETY: _IOWR(0x94, 18, struct btrfs_ioctl_ino_lookup_args); `arguments` has its
    // layout and size (asserted above) and is borrowed mutably for the call, which writes
    // the tree id and a name into it.
    unsafe {
        ioctl(
            directory,
            Updater::<BTRFS_IOC_INO_LOOKUP, _>::new(&mut arguments),
        )?
    };
    Ok(arguments.treeid)
}

/// `BTRFS_IOC_SEND` of the read-only subvolume open as `snapshot` into `output` (a
/// regular file), incremental from `parent_root` when given (which is then also the one
/// clone source, as `btrfs send -p` passes it). Stream version 1.
pub fn send(
    snapshot: BorrowedFd<'_>,
    output: BorrowedFd<'_>,
    parent_root: Option<u64>,
) -> Result<(), RawErrno> {
    let clone_sources: Vec<u64> = parent_root.into_iter().collect();
    let arguments = SendArguments {
        send_fd: raw(output),
        clone_sources_count: clone_sources.len() as u64,
        clone_sources: if clone_sources.is_empty() {
            std::ptr::null()
        } else {
            clone_sources.as_ptr()
        },
        parent_root: parent_root.unwrap_or(0),
        flags: 0,
        version: 0,
        reserved: [0; 28],
    };
    // SAFETY: _IOW(0x94, 38, struct btrfs_ioctl_send_args); `arguments` has its layout
    // and size (asserted above); `clone_sources` points at `clone_sources_count` u64s of
    // a vector that lives until after the call; `output` stays open for the call.
    let result = unsafe { ioctl(snapshot, Setter::<BTRFS_IOC_SEND, _>::new(arguments)) };
    drop(clone_sources);
    result
}

/// FICLONERANGE: shares `length` bytes of `source` at `source_offset` into
/// `destination` at `destination_offset` (length 0: to the end of the source).
pub fn clone_range(
    source: BorrowedFd<'_>,
    source_offset: u64,
    destination: BorrowedFd<'_>,
    destination_offset: u64,
    length: u64,
) -> Result<(), RawErrno> {
    let arguments = FileCloneRange {
        src_fd: raw(source),
        src_offset: source_offset,
        src_length: length,
        dest_offset: destination_offset,
    };
    // SAFETY: _IOW(0x94, 13, struct file_clone_range); `arguments` has its layout and size
    // (asserted above); the kernel only reads it, and `source` stays open for the call.
    unsafe { ioctl(destination, Setter::<FICLONERANGE, _>::new(arguments)) }
}

/// What FIDEDUPERANGE reported for its one destination that did not fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DedupeReport {
    /// FILE_DEDUPE_RANGE_SAME, with `bytes_deduped`.
    Same(u64),
    /// FILE_DEDUPE_RANGE_DIFFERS.
    Differs,
}

/// FIDEDUPERANGE with one destination: `length` bytes of `source` at `source_offset`
/// against `destination` at `destination_offset`. A failed destination (a negative
/// status) is returned as its errno, like a failed ioctl.
pub fn dedupe_range(
    source: BorrowedFd<'_>,
    source_offset: u64,
    destination: BorrowedFd<'_>,
    destination_offset: u64,
    length: u64,
) -> Result<DedupeReport, RawErrno> {
    let mut arguments = DedupeOneRange {
        header: FileDedupeRange {
            src_offset: source_offset,
            src_length: length,
            dest_count: 1,
            reserved1: 0,
            reserved2: 0,
        },
        info: FileDedupeRangeInfo {
            dest_fd: raw(destination),
            dest_offset: destination_offset,
            bytes_deduped: 0,
            status: 0,
            reserved: 0,
        },
    };
    // SAFETY: _IOWR(0x94, 54, struct file_dedupe_range); the kernel reads the header,
    // then `dest_count` (1) infos right after it, which `DedupeOneRange` lays out with
    // the kernel's sizes (asserted above), and writes `bytes_deduped` and `status` of
    // that info; `arguments` is borrowed mutably for the call and `destination` stays
    // open for it.
    unsafe { ioctl(source, Updater::<FIDEDUPERANGE, _>::new(&mut arguments))? };
    match arguments.info.status {
        0 => Ok(DedupeReport::Same(arguments.info.bytes_deduped)),
        FILE_DEDUPE_RANGE_DIFFERS => Ok(DedupeReport::Differs),
        status if status < 0 => Err(RawErrno::from_raw_os_error(-status)),
        _ => Err(RawErrno::INVAL),
    }
}

/// BTRFS_IOC_SUBVOL_GETFLAGS then SETFLAGS: sets or clears the read-only flag of the
/// subvolume whose root directory is open as `subvolume`, keeping its other flags.
pub fn set_read_only(subvolume: BorrowedFd<'_>, read_only: bool) -> Result<(), RawErrno> {
    let mut flags: u64 = 0;
    // SAFETY: _IOR(0x94, 25, __u64); the kernel writes one u64 into `flags`, borrowed
    // mutably for the call.
    unsafe {
        ioctl(
            subvolume,
            Updater::<BTRFS_IOC_SUBVOL_GETFLAGS, _>::new(&mut flags),
        )?
    };
    let flags = if read_only {
        flags | BTRFS_SUBVOL_RDONLY
    } else {
        flags & !BTRFS_SUBVOL_RDONLY
    };
    // SAFETY: _IOW(0x94, 26, __u64); the kernel reads one u64.
    unsafe {
        ioctl(
            subvolume,
            Setter::<BTRFS_IOC_SUBVOL_SETFLAGS, _>::new(flags),
        )
    }
}
