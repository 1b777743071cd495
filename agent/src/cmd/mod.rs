//! Subcommands, one module each.
pub mod bind;
pub mod modules;
