//! The pipeline file: YAML nodes with positions, and the typed specs read from them.
pub mod node;
