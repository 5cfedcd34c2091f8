//! The `cowproof` command line, one module per subcommand (DESIGN.md section 7).
//! This worktree holds only `check`; the other subcommands live on another branch.

pub mod check;
