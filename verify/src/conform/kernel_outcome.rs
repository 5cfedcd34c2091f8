//! What the kernel answered to one operation of `conform`: success, or an errno by
//! number with its name (the kernel may answer with errnos the engine's vocabulary
//! does not have, such as ELOOP or ENODATA). `real.rs` makes the system calls.

use rustix::io::Errno as RawErrno;
use std::fmt;

/// An errno the kernel returned, by number (the kernel may answer with errnos the
/// engine's vocabulary does not have, such as ELOOP or ENODATA).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KernelErrno(pub i32);

impl KernelErrno {
    pub(super) fn of(errno: RawErrno) -> KernelErrno {
        KernelErrno(errno.raw_os_error())
    }

    /// The errno's name (`E...`), or its number when it has no name here.
    pub fn name(self) -> String {
        if let Some(errno) = cowproof_engine::Errno::ALL
            .into_iter()
            .find(|errno| errno.number() == self.0)
        {
            return errno.name().to_string();
        }
        let extra = [
            (1, "EPERM"),
            (7, "E2BIG"),
            (9, "EBADF"),
            (13, "EACCES"),
            (16, "EBUSY"),
            (22, "EINVAL"),
            (26, "ETXTBSY"),
            (27, "EFBIG"),
            (34, "ERANGE"),
            (40, "ELOOP"),
            (61, "ENODATA"),
            (95, "EOPNOTSUPP"),
        ];
        extra
            .iter()
            .find(|(number, _)| *number == self.0)
            .map_or_else(|| format!("errno {}", self.0), |(_, name)| name.to_string())
    }
}

impl fmt::Display for KernelErrno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// What one operation did on the real filesystem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelOutcome {
    /// It succeeded.
    Ok,
    /// It failed with this errno.
    Failed(KernelErrno),
    /// It was refused before reaching the kernel: the resolved file is a device node,
    /// FIFO or socket.
    Refused(String),
    /// The operation has no kernel counterpart at this point (a send or relocation
    /// step; the whole job ran at its start).
    NotIssued,
}

impl From<Result<(), RawErrno>> for KernelOutcome {
    fn from(result: Result<(), RawErrno>) -> KernelOutcome {
        match result {
            Ok(()) => KernelOutcome::Ok,
            Err(errno) => KernelOutcome::Failed(KernelErrno::of(errno)),
        }
    }
}
