//! The pipeline file as YAML: a tree of nodes, each with the place it came from
//! ([`node`]), the reader that takes scalars and mappings as the file's types,
//! reporting every problem where the file wrote it ([`reader`]), and places inside a
//! scalar's text ([`scalar`]).

pub mod node;
pub(crate) mod reader;
pub mod scalar;
