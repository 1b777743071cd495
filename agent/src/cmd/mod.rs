//! Subcommands, one module each.
pub mod modules;
