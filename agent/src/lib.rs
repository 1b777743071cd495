//! placeholder
pub mod config;
pub mod host;
pub mod pci;
pub mod cmd;
pub mod modinfo;
