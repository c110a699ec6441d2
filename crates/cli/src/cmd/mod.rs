//! One file per command; `dlq` is a folder (list, show, redrive).
pub mod bench;
pub mod consume;
pub mod dlq;
pub mod graph;
pub mod produce;
pub mod run;
pub mod status;
pub mod topics;
