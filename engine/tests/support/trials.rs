//! Trials for `harness = false` test binaries (libtest-mimic): each trial names what it
//! needs of the host ([`Needs`]). When the host lacks it, the trial is reported as
//! *ignored* in the test summary, with the reason on standard error, so a machine without
//! root or btrfs never shows a real-kernel test as passed; under `CI=true` the same trial
//! fails instead, because CI must run the conformance tests.
//!
//! The prerequisites are checked once per [`Needs`] and binary ([`host::prerequisites`]).

use super::host::{self, Host, Needs};
use libtest_mimic::{Arguments, Failed, Trial};
use std::collections::BTreeMap;

/// Whether this run is CI's (`CI=true`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true")
}

/// A test body: it gets the host's programs and fails by panicking or by `Err`.
pub type Body = fn(&Host) -> Result<(), String>;

/// Builds the trials of one binary, checking each kind of prerequisite once.
#[derive(Default)]
pub struct Trials {
    checked: BTreeMap<String, Result<Host, String>>,
    trials: Vec<Trial>,
}

impl Trials {
    /// No trials yet.
    pub fn new() -> Trials {
        Trials::default()
    }

    /// Adds the trial `name`, which needs `needs` of the host.
    pub fn add(mut self, name: &str, needs: Needs, body: Body) -> Trials {
        let host = self
            .checked
            .entry(format!("{needs:?}"))
            .or_insert_with(|| host::prerequisites(needs))
            .clone();
        let trial = match host {
            Ok(host) => Trial::test(name, move || body(&host).map_err(Failed::from)),
            Err(reason) if in_ci() => {
                let message = format!("{reason}, and CI=true requires this test to run");
                Trial::test(name, move || Err(Failed::from(message)))
            }
            Err(reason) => {
                eprintln!("note: ignoring {name}: {reason}");
                Trial::test(name, move || Err(Failed::from(reason))).with_ignored_flag(true)
            }
        };
        self.trials.push(trial);
        self
    }

    /// Runs the trials as libtest would (filters, `--list`, `--ignored`), and exits with
    /// its status.
    pub fn run(self) -> ! {
        libtest_mimic::run(&Arguments::from_args(), self.trials).exit()
    }
}
