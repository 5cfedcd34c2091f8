//! The shadow namespace of `conform --random`: what the generator believes one
//! subvolume holds (each path below its root with its kind, and its read-only flag).
//! It changes only for operations drawn as valid, so it may be wrong; the kernel
//! decides.

use super::Kind;
use std::collections::BTreeMap;

/// What the generator believes one subvolume holds.
#[derive(Clone, Debug, Default)]
pub(super) struct Shadow {
    /// Paths below the root (components joined by `/`), with their kind.
    pub(super) paths: BTreeMap<Vec<String>, Kind>,
    pub(super) read_only: bool,
}

impl Shadow {
    pub(super) fn of_kind(&self, kind: Kind) -> Vec<Vec<String>> {
        self.paths
            .iter()
            .filter(|(_, found)| **found == kind)
            .map(|(path, _)| path.clone())
            .collect()
    }

    pub(super) fn directories(&self) -> Vec<Vec<String>> {
        let mut directories = vec![Vec::new()];
        directories.extend(self.of_kind(Kind::Directory));
        directories
    }

    pub(super) fn has_children(&self, directory: &[String]) -> bool {
        self.paths
            .keys()
            .any(|path| path.len() > directory.len() && path.starts_with(directory))
    }

    /// Moves `from` and everything below it to `to`.
    pub(super) fn rename(&mut self, from: &[String], to: &[String]) {
        let moved: Vec<(Vec<String>, Kind)> = self
            .paths
            .iter()
            .filter(|(path, _)| path.starts_with(from))
            .map(|(path, kind)| (path.clone(), *kind))
            .collect();
        for (path, _) in &moved {
            self.paths.remove(path);
        }
        self.remove_tree(to);
        for (path, kind) in moved {
            let mut renamed = to.to_vec();
            renamed.extend_from_slice(&path[from.len()..]);
            self.paths.insert(renamed, kind);
        }
    }

    pub(super) fn remove_tree(&mut self, root: &[String]) {
        self.paths.retain(|path, _| !path.starts_with(root));
    }
}
