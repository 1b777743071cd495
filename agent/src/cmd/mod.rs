//! Subcommands, one module each.
pub mod apply;
pub mod bind;
pub mod check;
pub mod config;
pub mod groups;
pub mod kconfig;
pub mod modules;
