//! placeholder
pub mod cmdline;
pub mod config;
pub mod host;
pub mod modules;
pub mod pci;
pub mod plan;
pub mod testing;
pub mod cmd;
pub mod modinfo;
