//! merger: the records of two or more topics into one, in order per input partition.
//!
//! ```yaml
//! all-orders: {kind: merger, from: [orders-web, orders-shop], to: orders}
//! ```

use super::kind::{Kind, Reads, Writes};

pub const KIND: Kind = Kind {
    name: "merger",
    fields: &[],
    reads: Reads::TwoOrMore(|_| Some("a merger")),
    writes: Writes::One,
};
