//! The store's I/O seam over the model: `PowerFile` (each write, `set_len` and
//! `fdatasync` recorded against its inode) and `Storage for PowerLoss` (files opened
//! and tracked, directory fsyncs snapshotted).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use millrace_store::{Storage, StorageFile};

use super::{Gate, Op, PowerLoss, Tracked, apply, eio};

struct PowerFile {
    layer: PowerLoss,
    ino: u64,
    file: Arc<File>,
}

impl StorageFile for PowerFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        if self.layer.is_cut() {
            return Err(eio());
        }
        self.file.read_at(buf, pos)
    }

    fn write_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        let mut s = self.layer.state();
        s.op(&self.layer.0.links)?;
        self.file.write_all_at(buf, pos)?;
        s.writes += 1;
        if let Some(t) = s.files.get_mut(&self.ino) {
            t.next += 1;
            t.pending.push((
                t.next,
                Op::Write {
                    pos,
                    data: buf.to_vec(),
                },
            ));
        }
        self.layer.0.wrote.notify_all();
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut s = self.layer.state();
        s.op(&self.layer.0.links)?;
        self.file.set_len(len)?;
        if let Some(t) = s.files.get_mut(&self.ino) {
            t.next += 1;
            t.pending.push((t.next, Op::SetLen(len)));
        }
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut s = self.layer.state();
        s.op(&self.layer.0.links)?;
        // What was written before the call; later writes wait for the next sync.
        let covered = s.files.get(&self.ino).map_or(0, |t| t.next);
        if let Some(gate) = s.gate.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let open = match gate {
                    Gate::Writes(n) => s.writes >= n,
                    Gate::Held => s.released,
                };
                if open || s.image.is_some() || Instant::now() >= deadline {
                    break;
                }
                s = self
                    .layer
                    .0
                    .wrote
                    .wait_timeout(s, Duration::from_millis(50))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
        if s.image.is_some() {
            // The power went while the sync ran: it never completed.
            return Err(eio());
        }
        if let Some(t) = s.files.get_mut(&self.ino) {
            // Another sync may have covered some of them meanwhile.
            let n = t.pending.partition_point(|(seq, _)| *seq <= covered);
            let done: Vec<(u64, Op)> = t.pending.drain(..n).collect();
            for (_, op) in &done {
                apply(&mut t.durable, op);
            }
        }
        s.file_syncs += 1;
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        if self.layer.is_cut() {
            return Err(eio());
        }
        Ok(self.file.metadata()?.len())
    }
}

impl Storage for PowerLoss {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        let mut s = self.state();
        if s.image.is_some() {
            return Err(eio());
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)?;
        let ino = file.metadata()?.ino();
        let file = match s.files.get(&ino) {
            Some(t) => Arc::clone(&t.file),
            None => {
                // What is on disk when the layer first sees a file is durable: it was
                // there at the start (or the last reboot), or the file is new and empty.
                let mut durable = Vec::new();
                std::io::Read::read_to_end(&mut &file, &mut durable)?;
                let file = Arc::new(file);
                s.files.insert(
                    ino,
                    Tracked {
                        file: Arc::clone(&file),
                        durable,
                        pending: Vec::new(),
                        next: 0,
                    },
                );
                file
            }
        };
        Ok(Arc::new(PowerFile {
            layer: self.clone(),
            ino,
            file,
        }))
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state();
        s.op(&self.0.links)?;
        s.snapshot_dir(path, &self.0.links)?;
        s.dir_syncs += 1;
        Ok(())
    }
}
