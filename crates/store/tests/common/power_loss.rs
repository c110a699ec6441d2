//! A storage layer that loses power. It passes the store's I/O to the real file system
//! through the store's seam (`Storage`/`StorageFile`) and keeps beside it what a power
//! cut would leave: per file, the bytes covered by its last completed `fdatasync`; per
//! directory, the entries of its last fsync. [`PowerLoss::cut`] freezes that image (every
//! later call fails with EIO, as on a dead machine), optionally keeping a prefix of each
//! file's unsynced writes and tearing the next one; [`PowerLoss::reboot`] rebuilds the
//! data directory from the image alone, so the store's recovery then runs on exactly
//! what survived — as fjall's and redb's crash tests do.
//!
//! Files and directories are known by inode, not by path. The store creates, renames and
//! removes directory entries with `std::fs`, outside the seam (a topic is made under a
//! temporary name and renamed into place; the offsets journal is compacted into a new
//! file renamed over the old), and none of that is durable before its directory is
//! fsynced. So each `sync_dir` reads the directory's entries as they are, whatever their
//! names: files and directories the store gains later are covered without this layer
//! knowing them. A hard link per file seen in a synced directory keeps files the store
//! later deletes or replaces, so a cut brings them back when their removal was never
//! made durable. The layer holds a handle on every inode it knows, so none is reused
//! under it. Real `fdatasync`s are skipped: the image is the only durability that counts.
//!
//! Unsynced writes are modelled per file as a prefix in write order plus one torn write
//! (its first bytes, or as many zeros — a size extended before its data). Writeback in
//! another order, leaving a hole before later unsynced data, is not modelled.
//!
//! Here: the model (what survives a cut, the cut, the reboot); `power_loss/seam.rs` the
//! `Storage`/`StorageFile` impls that feed it.
#![allow(dead_code)]

mod seam;

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use millrace_store::{RecoveryReport, Store, StoreError, StoreOptions};

/// What a cut keeps of the writes that no `fdatasync` covered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tear {
    /// Nothing: every unsynced byte is lost (the harshest cut for acknowledged data).
    Nothing,
    /// Per file, a random number of its unsynced writes in order, then a random part
    /// of the next one (its first bytes, or zeros): torn tails for recovery to cut.
    Random,
}

/// A power-losing data directory. Clones share it.
#[derive(Clone)]
pub struct PowerLoss(Arc<Inner>);

struct Inner {
    /// Holds `data` (the store's directory), `links` (the hard links) and rebuilds.
    base: tempfile::TempDir,
    root: PathBuf,
    links: PathBuf,
    state: Mutex<State>,
    /// Notified on every write, for [`PowerLoss::gate_next_sync`].
    wrote: Condvar,
    /// `StoreOptions::segment_buffer_bytes` for [`PowerLoss::open`] (0: the default).
    buffer_bytes: std::sync::atomic::AtomicUsize,
}

#[derive(Clone, Copy, Debug)]
enum Gate {
    /// Until this many writes were made, to any file, since the layer's start.
    Writes(u64),
    /// Until the test releases it.
    Held,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Node {
    File(u64),
    Dir(u64),
}

enum Op {
    Write { pos: u64, data: Vec<u8> },
    SetLen(u64),
}

struct Tracked {
    /// Keeps the inode alive (so it is never reused while the layer knows it).
    file: Arc<File>,
    durable: Vec<u8>,
    /// Unsynced writes, numbered in the order they were made.
    pending: Vec<(u64, Op)>,
    next: u64,
}

/// What survived a cut: file contents by inode, directory entries by inode.
struct Image {
    files: HashMap<u64, Vec<u8>>,
    dirs: HashMap<u64, BTreeMap<OsString, Node>>,
    root: u64,
}

struct State {
    root_ino: u64,
    files: HashMap<u64, Tracked>,
    /// The durable entries of each directory fsynced (or present at the start).
    dirs: HashMap<u64, BTreeMap<OsString, Node>>,
    /// Handles on every directory inode an image may name, so none is reused.
    dir_handles: HashMap<u64, File>,
    image: Option<Image>,
    /// Writes, `set_len`s, `fdatasync`s and directory fsyncs so far.
    ops: u64,
    /// Cut before this op runs.
    cut_at: Option<u64>,
    tear: Tear,
    rng: u64,
    file_syncs: u64,
    dir_syncs: u64,
    /// Writes made so far, to any file.
    writes: u64,
    /// What the next `fdatasync` waits for before it completes.
    gate: Option<Gate>,
    /// Set by [`PowerLoss::release_sync`]: a held sync completes.
    released: bool,
    reboots: u64,
}

fn eio() -> io::Error {
    io::Error::from_raw_os_error(5)
}

fn apply(image: &mut Vec<u8>, op: &Op) {
    match op {
        Op::Write { pos, data } => {
            let pos = usize::try_from(*pos).expect("test file positions fit usize");
            if image.len() < pos + data.len() {
                image.resize(pos + data.len(), 0);
            }
            image[pos..pos + data.len()].copy_from_slice(data);
        }
        Op::SetLen(len) => image.resize(usize::try_from(*len).expect("test sizes"), 0),
    }
}

impl State {
    fn next(&mut self) -> u64 {
        // xorshift64*: seeded, so a failing cut can be repeated.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Counts an op; cuts first if this is the op to cut at. Fails once cut.
    fn op(&mut self, links: &Path) -> io::Result<()> {
        if self.image.is_none() && self.cut_at.is_some_and(|at| self.ops >= at) {
            self.freeze(links);
        }
        if self.image.is_some() {
            return Err(eio());
        }
        self.ops += 1;
        Ok(())
    }

    fn freeze(&mut self, links: &Path) {
        let mut files = HashMap::new();
        let tear = self.tear;
        let inos: Vec<u64> = self.files.keys().copied().collect();
        for ino in inos {
            let keep = match tear {
                Tear::Nothing => 0,
                Tear::Random => {
                    let n = self.files[&ino].pending.len() as u64;
                    usize::try_from(self.next() % (n + 1)).expect("small")
                }
            };
            let (torn_len, zeros) = (self.next(), self.next().is_multiple_of(2));
            let t = &self.files[&ino];
            let mut img = t.durable.clone();
            for (_, op) in &t.pending[..keep] {
                apply(&mut img, op);
            }
            if tear == Tear::Random {
                match t.pending.get(keep).map(|(_, op)| op) {
                    Some(Op::Write { pos, data }) => {
                        let n = usize::try_from(torn_len % (data.len() as u64 + 1)).expect("n");
                        let part = if zeros {
                            vec![0; n]
                        } else {
                            data[..n].to_vec()
                        };
                        apply(
                            &mut img,
                            &Op::Write {
                                pos: *pos,
                                data: part,
                            },
                        );
                    }
                    Some(op @ Op::SetLen(_)) if zeros => apply(&mut img, op),
                    _ => {}
                }
            }
            files.insert(ino, img);
        }
        // Files in synced directories that never went through the seam: as they are.
        for entries in self.dirs.values() {
            for node in entries.values() {
                if let Node::File(ino) = *node
                    && !files.contains_key(&ino)
                {
                    let bytes = std::fs::read(links.join(ino.to_string())).unwrap_or_default();
                    files.insert(ino, bytes);
                }
            }
        }
        self.image = Some(Image {
            files,
            dirs: self.dirs.clone(),
            root: self.root_ino,
        });
    }

    /// Records `dir`'s entries as durable, linking every file so it can come back.
    fn snapshot_dir(&mut self, dir: &Path, links: &Path) -> io::Result<()> {
        let ino = std::fs::metadata(dir)?.ino();
        let mut entries = BTreeMap::new();
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let meta = std::fs::symlink_metadata(e.path())?;
            let node = if meta.is_dir() {
                self.dir_handles
                    .entry(meta.ino())
                    .or_insert(File::open(e.path())?);
                Node::Dir(meta.ino())
            } else if meta.is_file() {
                let link = links.join(meta.ino().to_string());
                if !link.exists() {
                    std::fs::hard_link(e.path(), &link)?;
                }
                Node::File(meta.ino())
            } else {
                continue;
            };
            entries.insert(e.file_name(), node);
        }
        self.dir_handles.entry(ino).or_insert(File::open(dir)?);
        self.dirs.insert(ino, entries);
        Ok(())
    }

    /// Everything under `dir` counts as durable (the state a reboot starts from).
    fn snapshot_tree(&mut self, dir: &Path, links: &Path) -> io::Result<()> {
        self.snapshot_dir(dir, links)?;
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            if e.file_type()?.is_dir() {
                self.snapshot_tree(&e.path(), links)?;
            }
        }
        Ok(())
    }
}

impl PowerLoss {
    /// An empty data directory; cuts tear as `Tear::Nothing` until told otherwise.
    pub fn new(seed: u64) -> PowerLoss {
        PowerLoss::after(seed, |_| {})
    }

    /// A data directory made by the store itself (opened once and closed on the real
    /// file system), all of it durable when the layer starts.
    pub fn with_store(seed: u64) -> PowerLoss {
        PowerLoss::after(seed, |dir| {
            Store::open(dir, StoreOptions::default()).expect("open");
        })
    }

    /// A data directory that `prepare` fills before the layer starts: what it leaves
    /// counts as durable.
    pub fn after(seed: u64, prepare: impl FnOnce(&Path)) -> PowerLoss {
        // On tmpfs where there is one: durability here is the image's, not the disk's,
        // and ext4 slows down under the churn of thousands of small directories.
        let base = match std::fs::metadata("/dev/shm") {
            Ok(m) if m.is_dir() => tempfile::tempdir_in("/dev/shm"),
            _ => tempfile::tempdir(),
        }
        .expect("temp dir");
        let root = base.path().join("data");
        let links = base.path().join("links");
        for d in [&root, &links] {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(d)
                .expect("mkdir");
        }
        prepare(&root);
        let mut state = State {
            root_ino: std::fs::metadata(&root).expect("root").ino(),
            files: HashMap::new(),
            dirs: HashMap::new(),
            dir_handles: HashMap::new(),
            image: None,
            ops: 0,
            cut_at: None,
            tear: Tear::Nothing,
            rng: seed | 1,
            file_syncs: 0,
            dir_syncs: 0,
            writes: 0,
            gate: None,
            released: false,
            reboots: 0,
        };
        state.snapshot_tree(&root, &links).expect("snapshot");
        PowerLoss(Arc::new(Inner {
            base,
            root,
            links,
            state: Mutex::new(state),
            wrote: Condvar::new(),
            buffer_bytes: std::sync::atomic::AtomicUsize::new(0),
        }))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.0.root
    }

    /// Opens the store on the data directory through this layer.
    pub fn open(&self) -> Result<(Store, RecoveryReport), StoreError> {
        let mut opts = StoreOptions {
            storage: Arc::new(self.clone()),
            ..StoreOptions::default()
        };
        let buffer = self
            .0
            .buffer_bytes
            .load(std::sync::atomic::Ordering::SeqCst);
        if buffer > 0 {
            opts.segment_buffer_bytes = buffer;
        }
        Store::open(self.dir(), opts)
    }

    /// Opens the store with segment tail buffers of `bytes` from now on, so that
    /// workloads of a few hundred bytes write buffers out, and cuts land in those writes.
    pub fn set_segment_buffer_bytes(&self, bytes: usize) {
        self.0
            .buffer_bytes
            .store(bytes, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn set_tear(&self, tear: Tear) {
        self.state().tear = tear;
    }

    /// Writes, `set_len`s and syncs so far: the crash points passed.
    pub fn ops(&self) -> u64 {
        self.state().ops
    }

    /// Cuts the power just before op number `op` (counting from 0) would run.
    pub fn cut_at(&self, op: u64) {
        self.state().cut_at = Some(op);
    }

    /// Cuts the power after `more` ops from now; returns the op it cuts before.
    pub fn cut_in(&self, more: u64) -> u64 {
        let mut s = self.state();
        let at = s.ops + more;
        s.cut_at = Some(at);
        at
    }

    /// Cuts the power now. Appends acknowledged before this returns are in the image;
    /// an acknowledgement after it relies on a sync that completed before it.
    pub fn cut(&self) {
        let mut s = self.state();
        if s.image.is_none() {
            s.freeze(&self.0.links);
        }
        self.0.wrote.notify_all();
    }

    pub fn is_cut(&self) -> bool {
        self.state().image.is_some()
    }

    /// Completed `fdatasync`s of files, and fsyncs of directories.
    pub fn file_syncs(&self) -> u64 {
        self.state().file_syncs
    }

    pub fn dir_syncs(&self) -> u64 {
        self.state().dir_syncs
    }

    /// Makes the next `fdatasync` wait (up to 10 s) until `writes` more writes, to any
    /// file, were made from now, so appenders that arrive meanwhile find a sync running
    /// (their writes go to their partitions' segments; the sync may be the journal's).
    /// Like a real one, the sync covers only what was written to its file before it
    /// was called.
    pub fn gate_next_sync(&self, writes: usize) {
        let mut s = self.state();
        let until = s.writes + writes as u64;
        s.gate = Some(Gate::Writes(until));
    }

    /// Holds the next `fdatasync` (up to 10 s) until [`release_sync`](Self::release_sync).
    pub fn hold_next_sync(&self) {
        let mut s = self.state();
        s.gate = Some(Gate::Held);
        s.released = false;
    }

    pub fn release_sync(&self) {
        self.state().released = true;
        self.0.wrote.notify_all();
    }

    /// Writes no completed `fdatasync` has covered yet, over all files.
    pub fn unsynced_writes(&self) -> usize {
        self.state().files.values().map(|t| t.pending.len()).sum()
    }

    /// Rebuilds the data directory from what survived the cut (the store must be
    /// dropped first), and starts afresh from there: power is back.
    pub fn reboot(&self) {
        let mut s = self.state();
        let image = s.image.take().expect("reboot after a cut");
        s.reboots += 1;
        let base = self.0.base.path();
        let rebuilt = base.join(format!("rebuilt-{}", s.reboots));
        let mut on_path = Vec::new();
        build(&image, image.root, &rebuilt, &mut on_path).expect("rebuild the image");
        let old = base.join(format!("before-cut-{}", s.reboots));
        std::fs::rename(&self.0.root, &old).expect("move the old directory aside");
        std::fs::rename(&rebuilt, &self.0.root).expect("put the image in place");
        std::fs::remove_dir_all(&old).expect("remove the old directory");
        std::fs::remove_dir_all(&self.0.links).expect("clear links");
        std::fs::create_dir(&self.0.links).expect("links");
        s.files.clear();
        s.dirs.clear();
        s.dir_handles.clear();
        s.cut_at = None;
        s.ops = 0;
        s.gate = None;
        s.root_ino = std::fs::metadata(&self.0.root).expect("root").ino();
        s.snapshot_tree(&self.0.root, &self.0.links)
            .expect("snapshot");
    }
}

/// Writes directory `ino` of `image` (and everything under it) at `to`.
fn build(image: &Image, ino: u64, to: &Path, on_path: &mut Vec<u64>) -> io::Result<()> {
    std::fs::DirBuilder::new().mode(0o700).create(to)?;
    assert!(!on_path.contains(&ino), "a directory inside itself");
    on_path.push(ino);
    for (name, node) in image.dirs.get(&ino).into_iter().flatten() {
        let path = to.join(name);
        match *node {
            Node::File(f) => std::fs::write(&path, image.files.get(&f).map_or(&[][..], |v| v))?,
            // A directory whose own entries were never fsynced comes back empty.
            Node::Dir(d) => build(image, d, &path, on_path)?,
        }
    }
    on_path.pop();
    Ok(())
}

/// Reads a whole partition of a reopened store.
pub fn read_partition(store: &Store, topic: &str, p: u32) -> Vec<millrace_store::StoredRecord> {
    store
        .topic(topic)
        .expect("topic")
        .partition(p)
        .expect("partition")
        .read(0, usize::MAX, usize::MAX)
        .expect("read")
}
