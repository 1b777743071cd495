//! placeholder, crate essay below is written with the modules
pub mod host;
