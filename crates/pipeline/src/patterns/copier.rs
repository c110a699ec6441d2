//! copier: every record to every output topic.
//!
//! ```yaml
//! welcome: {kind: copier, from: signups, to: [welcome-email, audit]}
//! ```

use super::kind::{Kind, Reads, Writes};

pub const KIND: Kind = Kind {
    name: "copier",
    fields: &[],
    reads: Reads::One,
    writes: Writes::Many,
};
