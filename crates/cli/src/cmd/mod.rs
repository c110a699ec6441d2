//! One file per command.
pub mod bench;
pub mod consume;
pub mod graph;
pub mod produce;
pub mod run;
pub mod serve;
pub mod status;
pub mod topics;
