//! Subcommands, one module each.
pub mod bind;
pub mod kconfig;
pub mod modules;
pub mod check;
pub mod groups;
