//! The combiner's index of outputs already seen (`by_value`): an output's bytes → its
//! group, and the repeats a count has not added yet.
//!
//! An open-addressing table of cache-line slots with the key inline, so that a
//! look-up touches one line (a `HashMap` touches its control bytes and then its
//! bucket), and so that the slots of a record's outputs can be prefetched before any
//! of them is looked up: the cache misses of a line's rarer words then overlap
//! instead of following one another. Together they were a third of the word count's
//! time. A key longer than [`MAX_KEY`] is not kept; its output takes the combiner's
//! general path every time, which gives the same result.

use std::hash::{BuildHasher, Hasher};

/// An output seen before: its group, and (when the reducer counts) how many times it
/// was seen again since its group last counted it. Counting here spares a look at the
/// group for each repeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    pub group: u32,
    pub uncounted: u32,
}

/// Key bytes a slot holds.
pub const MAX_KEY: usize = 47;

/// Slots a table starts with, and keeps when cleared while nearly empty.
const INITIAL: usize = 1024;

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Slot {
    /// The key's hash; 0 marks an empty slot (hashes are never 0).
    hash: u64,
    seen: Seen,
    len: u8,
    key: [u8; MAX_KEY],
}

const EMPTY: Slot = Slot {
    hash: 0,
    seen: Seen {
        group: 0,
        uncounted: 0,
    },
    len: 0,
    key: [0; MAX_KEY],
};

/// Keys are a prefix (the record key's part, the same for all outputs of a record)
/// followed by the output's bytes; both are hashed and compared without being copied
/// together.
pub struct SeenTable {
    slots: Vec<Slot>,
    len: usize,
    state: foldhash::fast::RandomState,
}

impl Default for SeenTable {
    fn default() -> Self {
        SeenTable {
            slots: vec![EMPTY; INITIAL],
            len: 0,
            state: foldhash::fast::RandomState::default(),
        }
    }
}

impl SeenTable {
    pub fn len(&self) -> usize {
        self.len
    }

    /// The hash of key `prefix ++ value`, for `prefetch`, `get_mut` and `insert`.
    pub fn hash(&self, prefix: &[u8], value: &[u8]) -> u64 {
        let mut h = self.state.build_hasher();
        h.write(prefix);
        h.write(value);
        h.finish().max(1)
    }

    /// Starts loading the slot where a look-up of `hash` begins.
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            let slot = std::ptr::from_ref(&self.slots[self.home(hash)]).cast::<i8>();
            // SAFETY: a prefetch is a hint with no effect on memory or on the
            // program's state, valid for any address (this one is a live slot), and
            // SSE, which it needs, is part of every x86_64 target.
            #[allow(unsafe_code)]
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(slot)
            };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = hash;
    }

    fn home(&self, hash: u64) -> usize {
        // The high bits: foldhash mixes them best.
        usize::try_from(hash >> 32).unwrap_or(0) & (self.slots.len() - 1)
    }

    /// Where `prefix ++ value` is, or the empty slot where it would go.
    fn find(&self, hash: u64, prefix: &[u8], value: &[u8]) -> usize {
        let mask = self.slots.len() - 1;
        let mut i = self.home(hash);
        loop {
            let s = &self.slots[i];
            if s.hash == 0 {
                return i;
            }
            if s.hash == hash && usize::from(s.len) == prefix.len() + value.len() {
                let (p, v) = s.key[..usize::from(s.len)].split_at(prefix.len());
                if p == prefix && v == value {
                    return i;
                }
            }
            i = (i + 1) & mask;
        }
    }

    pub fn get_mut(&mut self, hash: u64, prefix: &[u8], value: &[u8]) -> Option<&mut Seen> {
        let i = self.find(hash, prefix, value);
        let s = &mut self.slots[i];
        (s.hash != 0).then_some(&mut s.seen)
    }

    /// Adds a key that is not in the table; `false` (nothing kept) when it is longer
    /// than [`MAX_KEY`].
    pub fn insert(&mut self, hash: u64, prefix: &[u8], value: &[u8], seen: Seen) -> bool {
        let n = prefix.len() + value.len();
        if n > MAX_KEY {
            return false;
        }
        // At most half full: probes stay short.
        if 2 * (self.len + 1) > self.slots.len() {
            self.grow();
        }
        let i = self.find(hash, prefix, value);
        let s = &mut self.slots[i];
        debug_assert_eq!(s.hash, 0, "inserting a key already there");
        s.hash = hash;
        s.seen = seen;
        s.len = u8::try_from(n).unwrap_or(u8::MAX);
        s.key[..prefix.len()].copy_from_slice(prefix);
        s.key[prefix.len()..n].copy_from_slice(value);
        self.len += 1;
        true
    }

    fn grow(&mut self) {
        let bigger = vec![EMPTY; self.slots.len() * 2];
        let old = std::mem::replace(&mut self.slots, bigger);
        let mask = self.slots.len() - 1;
        for s in old.into_iter().filter(|s| s.hash != 0) {
            let mut i = self.home(s.hash);
            while self.slots[i].hash != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = s;
        }
    }

    /// What every key maps to.
    pub fn values(&self) -> impl Iterator<Item = &Seen> {
        self.slots.iter().filter(|s| s.hash != 0).map(|s| &s.seen)
    }

    pub fn clear(&mut self) {
        // A table grown large and then used for a few keys (a continuous run clears
        // it after every record) goes back to its first size, so that clearing costs
        // at most a few times what was inserted.
        if self.slots.len() > INITIAL && self.len < self.slots.len() / 8 {
            self.slots = vec![EMPTY; INITIAL];
        } else if self.len > 0 {
            self.slots.fill(EMPTY);
        }
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(group: u32) -> Seen {
        Seen {
            group,
            uncounted: 0,
        }
    }

    #[test]
    fn finds_what_was_inserted_by_prefix_and_value_together() {
        let mut t = SeenTable::default();
        let keys: Vec<Vec<u8>> = (0..5000u32).map(|i| format!("w{i}").into_bytes()).collect();
        for (i, k) in (0u32..).zip(&keys) {
            let h = t.hash(b"\0", k);
            assert!(t.get_mut(h, b"\0", k).is_none());
            assert!(t.insert(h, b"\0", k, seen(i)));
        }
        assert_eq!(t.len(), 5000);
        assert!(t.slots.len() >= 10_000, "grew to stay at most half full");
        for (i, k) in (0u32..).zip(&keys) {
            let h = t.hash(b"\0", k);
            let s = t.get_mut(h, b"\0", k).expect("found");
            assert_eq!(s.group, i);
            s.uncounted += 1;
        }
        assert_eq!(t.values().map(|s| s.uncounted).sum::<u32>(), 5000);
        // Another split of the same bytes is another key (the prefix is the record
        // key's part, the value the output's).
        let h = t.hash(b"\0w", b"1");
        assert!(t.get_mut(h, b"\0w", b"1").is_none());
    }

    #[test]
    fn long_keys_are_not_kept() {
        let mut t = SeenTable::default();
        let long = vec![b'x'; MAX_KEY];
        let h = t.hash(b"\0", &long);
        assert!(!t.insert(h, b"\0", &long, seen(1)));
        assert!(t.get_mut(h, b"\0", &long).is_none());
        let fits = &long[1..];
        let h = t.hash(b"\0", fits);
        assert!(t.insert(h, b"\0", fits, seen(2)));
        assert_eq!(t.get_mut(h, b"\0", fits).map(|s| s.group), Some(2));
    }

    #[test]
    fn clearing_forgets_and_shrinks_a_table_grown_large() {
        let mut t = SeenTable::default();
        for i in 0..4000u32 {
            let k = i.to_le_bytes();
            let h = t.hash(b"", &k);
            t.insert(h, b"", &k, seen(i));
        }
        t.clear();
        assert_eq!(t.len(), 0);
        assert_eq!(t.values().count(), 0);
        let k = 7u32.to_le_bytes();
        let h = t.hash(b"", &k);
        assert!(t.get_mut(h, b"", &k).is_none());
        t.insert(h, b"", &k, seen(7));
        t.clear();
        assert_eq!(
            t.slots.len(),
            INITIAL,
            "cleared after few keys: back to its first size"
        );
    }
}
