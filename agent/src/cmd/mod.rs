//! Subcommands, one module each.
#[cfg(feature = "tools")]
pub mod apply;
pub mod bind;
#[cfg(feature = "tools")]
pub mod check;
#[cfg(feature = "tools")]
pub mod config;
#[cfg(feature = "tools")]
pub mod detach;
#[cfg(feature = "tools")]
pub mod groups;
#[cfg(feature = "tools")]
pub mod hook;
#[cfg(feature = "tools")]
pub mod kconfig;
#[cfg(feature = "tools")]
pub mod modules;
