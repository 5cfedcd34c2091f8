//! Proptest strategies for valid scripts (tests only): every value they generate obeys
//! the AST invariants, so `parse(print(script)) == script` must hold for all of them.
//!
//! The generators lean on the corners of the text form: names that look like keywords
//! or numbers, names and paths at their length limits, DATA with every byte value, quotes,
//! backslashes and `#`, xattr names and symlink targets that need quoting, and numbers
//! at 0 and `u64::MAX`.

use cowproof_engine::{Errno, Policy};
use proptest::prelude::*;
use proptest::strategy::Union;

use super::data::{Data, DATA_LENGTH_MAX};
use super::names::{Identifier, Name, ScriptPath, SymlinkTarget, XattrName, NAME_LENGTH_MAX};
use super::op::{Op, RelocateTarget, MODE_MAX};
use super::{Expect, GeometryName, GeometrySpec, Script, Statement};

/// Names that collide with keywords, numbers and other words of the grammar.
const TRICKY_NAMES: [&str; 14] = [
    "ro", "rw", "commit", "parent", "bg", "metadata", "0", "123", "...", ".x", "-", "~", "@", "a.",
];

pub(crate) fn name() -> BoxedStrategy<Name> {
    prop_oneof![
        6 => "[A-Za-z0-9._+@~-]{1,12}",
        2 => proptest::sample::select(&TRICKY_NAMES[..]).prop_map(str::to_string),
        1 => Just("n".repeat(NAME_LENGTH_MAX)),
    ]
    .prop_filter_map("`.` and `..` are not names", |text| Name::new(&text).ok())
    .boxed()
}

pub(crate) fn identifier() -> BoxedStrategy<Identifier> {
    prop_oneof![
        "[A-Za-z_][A-Za-z0-9_-]{0,15}",
        Just("j".repeat(64)),
        proptest::sample::select(
            &["transid", "read-node-slot", "first-key", "enoent", "stream"][..]
        )
        .prop_map(str::to_string),
    ]
    .prop_map(|text| Identifier::new(&text).expect("generated identifiers are valid"))
    .boxed()
}

/// A path; with `entry_inside` it has at least one component.
pub(crate) fn path(entry_inside: bool) -> BoxedStrategy<ScriptPath> {
    let components_min = usize::from(entry_inside);
    (name(), proptest::collection::vec(name(), components_min..5))
        .prop_map(|(subvolume, components)| {
            ScriptPath::new(subvolume, components).expect("5 names of 255 bytes fit")
        })
        .boxed()
}

fn nasty_bytes(length_max: usize) -> BoxedStrategy<Vec<u8>> {
    let interesting = proptest::sample::select(
        &[
            b'"', b'\\', b'#', b'\n', b'\r', b'\t', b' ', 0, 0x7f, 0x80, 0xff, b'x', b'(', b')',
        ][..],
    );
    let byte = prop_oneof![any::<u8>(), interesting];
    proptest::collection::vec(byte, 0..length_max).boxed()
}

pub(crate) fn data() -> BoxedStrategy<Data> {
    let length = prop_oneof![0..64u64, Just(DATA_LENGTH_MAX), 0..=DATA_LENGTH_MAX];
    prop_oneof![
        nasty_bytes(48).prop_map(|bytes| Data::text(bytes).expect("short")),
        length
            .clone()
            .prop_map(|length| Data::zeros(length).expect("bounded")),
        (length, any::<u64>())
            .prop_map(|(length, seed)| Data::bytes(length, seed).expect("bounded")),
    ]
    .boxed()
}

fn xattr_name() -> BoxedStrategy<XattrName> {
    prop_oneof![
        "user\\.[A-Za-z0-9._+@~-]{1,12}".prop_map(String::into_bytes),
        nasty_bytes(32),
    ]
    .prop_filter_map("non-empty, no NUL", |bytes| XattrName::new(&bytes).ok())
    .boxed()
}

fn symlink_target() -> BoxedStrategy<SymlinkTarget> {
    prop_oneof![
        "[A-Za-z0-9./_+@~-]{1,24}".prop_map(String::into_bytes),
        nasty_bytes(32),
    ]
    .prop_filter_map("non-empty, no NUL", |bytes| SymlinkTarget::new(&bytes).ok())
    .boxed()
}

fn number() -> BoxedStrategy<u64> {
    prop_oneof![0..16u64, Just(u64::MAX), any::<u64>()].boxed()
}

fn steps() -> BoxedStrategy<u64> {
    prop_oneof![Just(1u64), 1..10u64, Just(u64::MAX)].boxed()
}

fn subvolume_ops() -> Vec<BoxedStrategy<Op>> {
    vec![
        name().prop_map(|name| Op::SubvolumeCreate { name }).boxed(),
        name().prop_map(|name| Op::SubvolumeDelete { name }).boxed(),
        (name(), any::<bool>())
            .prop_map(|(name, read_only)| Op::SubvolumeSetReadOnly { name, read_only })
            .boxed(),
        (name(), name(), any::<bool>())
            .prop_map(|(source, destination, read_only)| Op::Snapshot {
                source,
                destination,
                read_only,
            })
            .boxed(),
        (name(), path(true), any::<bool>())
            .prop_map(|(source, destination, read_only)| Op::SnapshotInto {
                source,
                destination,
                read_only,
            })
            .boxed(),
        Just(Op::Commit).boxed(),
        (1u64..4)
            .prop_map(|steps| Op::CleanerStep { steps })
            .boxed(),
        Just(Op::Remount).boxed(),
        Just(Op::Crash).boxed(),
        Just(Op::Sync).boxed(),
    ]
}

fn file_ops() -> Vec<BoxedStrategy<Op>> {
    vec![
        path(true).prop_map(|path| Op::Mkdir { path }).boxed(),
        path(true).prop_map(|path| Op::Touch { path }).boxed(),
        path(true).prop_map(|path| Op::Unlink { path }).boxed(),
        path(true).prop_map(|path| Op::Rmdir { path }).boxed(),
        (symlink_target(), path(true))
            .prop_map(|(target, path)| Op::Symlink { target, path })
            .boxed(),
        (path(true), number(), data())
            .prop_map(|(path, offset, data)| Op::Write { path, offset, data })
            .boxed(),
        (path(true), number())
            .prop_map(|(path, size)| Op::Truncate { path, size })
            .boxed(),
        (path(true), number(), data())
            .prop_map(|(path, offset, data)| Op::WriteBuffered { path, offset, data })
            .boxed(),
        path(false).prop_map(|path| Op::Fsync { path }).boxed(),
        (path(true), path(true))
            .prop_map(|(source, destination)| Op::Rename {
                source,
                destination,
            })
            .boxed(),
        (path(true), path(true))
            .prop_map(|(source, destination)| Op::Link {
                source,
                destination,
            })
            .boxed(),
        (path(true), number(), path(true), number(), number())
            .prop_map(
                |(source, source_offset, destination, destination_offset, length)| Op::Clone {
                    source,
                    source_offset,
                    destination,
                    destination_offset,
                    length,
                },
            )
            .boxed(),
        (path(true), number(), path(true), number(), number())
            .prop_map(
                |(source, source_offset, destination, destination_offset, length)| Op::Dedupe {
                    source,
                    source_offset,
                    destination,
                    destination_offset,
                    length,
                },
            )
            .boxed(),
    ]
}

fn attribute_ops() -> Vec<BoxedStrategy<Op>> {
    vec![
        (path(false), xattr_name(), data())
            .prop_map(|(path, name, value)| Op::SetXattr { path, name, value })
            .boxed(),
        (path(false), xattr_name())
            .prop_map(|(path, name)| Op::RemoveXattr { path, name })
            .boxed(),
        (path(false), 0..=MODE_MAX)
            .prop_map(|(path, mode)| Op::Chmod { path, mode })
            .boxed(),
        (path(false), any::<u32>(), any::<u32>())
            .prop_map(|(path, uid, gid)| Op::Chown { path, uid, gid })
            .boxed(),
    ]
}

fn job_ops() -> Vec<BoxedStrategy<Op>> {
    let target = prop_oneof![
        Just(RelocateTarget::Metadata),
        Just(RelocateTarget::Data),
        number().prop_map(RelocateTarget::BlockGroup),
    ];
    vec![
        (identifier(), name(), proptest::option::of(name()))
            .prop_map(|(job, snapshot, parent)| Op::SendStart {
                job,
                snapshot,
                parent,
            })
            .boxed(),
        (identifier(), steps())
            .prop_map(|(job, steps)| Op::SendStep { job, steps })
            .boxed(),
        identifier().prop_map(|job| Op::SendFinish { job }).boxed(),
        (identifier(), target)
            .prop_map(|(job, target)| Op::RelocateStart { job, target })
            .boxed(),
        (identifier(), steps())
            .prop_map(|(job, steps)| Op::RelocateStep { job, steps })
            .boxed(),
        identifier()
            .prop_map(|job| Op::RelocateFinish { job })
            .boxed(),
    ]
}

/// Any valid operation, each kind equally likely.
pub(crate) fn op() -> BoxedStrategy<Op> {
    let mut kinds = subvolume_ops();
    kinds.extend(file_ops());
    kinds.extend(attribute_ops());
    kinds.extend(job_ops());
    Union::new(kinds).boxed()
}

pub(crate) fn expect() -> BoxedStrategy<Expect> {
    prop_oneof![
        Just(Expect::Ok),
        proptest::sample::select(&Errno::ALL[..]).prop_map(Expect::Error),
        proptest::option::of(identifier()).prop_map(Expect::Violation),
    ]
    .boxed()
}

pub(crate) fn statement() -> BoxedStrategy<Statement> {
    prop_oneof![4 => op().prop_map(Statement::Op), 1 => expect().prop_map(Statement::Expect)]
        .boxed()
}

fn geometry() -> BoxedStrategy<GeometrySpec> {
    let pairs = proptest::collection::vec((identifier(), number()), 1..5).prop_map(|mut pairs| {
        let mut seen = std::collections::BTreeSet::new();
        pairs.retain(|(key, _)| seen.insert(key.clone()));
        GeometrySpec::Pairs(pairs)
    });
    prop_oneof![
        proptest::sample::select(&GeometryName::ALL[..]).prop_map(GeometrySpec::Named),
        pairs,
    ]
    .boxed()
}

/// Any valid script of up to `statements_max` statements.
pub(crate) fn script(statements_max: usize) -> BoxedStrategy<Script> {
    (
        proptest::option::of(proptest::sample::select(&Policy::NAMED[..])),
        proptest::option::of(geometry()),
        proptest::collection::vec(statement(), 0..statements_max),
    )
        .prop_map(|(policy, geometry, statements)| Script {
            policy,
            geometry,
            statements,
        })
        .boxed()
}
