//! The metering spool: every generation record is appended to a local file before its
//! request's final bytes leave, and the file is deleted once the database has every record
//! in it. A write to a file survives the process being killed (the kernel holds the pages),
//! so a record whose client was answered is never lost to a crash or `kill -9`; the next start
//! replays what the spool still holds (writes are idempotent by record id).
//!
//! One append is one `write(2)` of a JSON line: no database and no fsync on the request path.
//! Segments rotate every [`SEGMENT_RECORDS`] records or [`SEGMENT_AGE`]; a lock file keeps two
//! processes off the same spool.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use parking_lot::Mutex;

use super::GenerationRecord;

const SEGMENT_RECORDS: u64 = 50_000;
const SEGMENT_AGE: Duration = Duration::from_secs(10);
const EXTENSION: &str = "spool";

struct Segment {
    /// Shared so that appends write outside the lock (`O_APPEND` keeps each line whole).
    file: Option<Arc<File>>,
    appended: u64,
    written: u64,
}

struct State {
    current: u64,
    opened_at: Instant,
    segments: BTreeMap<u64, Segment>,
}

pub struct Spool {
    dir: PathBuf,
    state: Mutex<State>,
    /// Held for the spool's lifetime: the lock that keeps other processes out.
    _lock: File,
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:016}.{EXTENSION}"))
}

impl Spool {
    /// Open (creating) the spool in `dir`, after `replay` has been given what an earlier run
    /// left behind. Fails when another process holds the spool.
    pub fn open(dir: &Path) -> anyhow::Result<(Spool, Vec<PathBuf>)> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))?;
        lock.try_lock().map_err(|_| {
            anyhow::anyhow!(
                "another llmux process is using {} (give each node its own data_dir)",
                dir.display()
            )
        })?;
        let mut leftovers: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == EXTENSION))
            .collect();
        leftovers.sort();
        let next = leftovers
            .iter()
            .filter_map(|p| p.file_stem()?.to_str()?.parse::<u64>().ok())
            .max()
            .map_or(1, |n| n + 1);
        let spool = Spool {
            dir: dir.to_path_buf(),
            state: Mutex::new(State {
                current: next,
                opened_at: Instant::now(),
                segments: BTreeMap::new(),
            }),
            _lock: lock,
        };
        Ok((spool, leftovers))
    }

    /// Append a record; returns the segment it went to (to report back once written).
    pub fn append(&self, r: &GenerationRecord) -> std::io::Result<u64> {
        let mut line = Vec::with_capacity(1024);
        serde_json::to_writer(&mut line, r).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let (file, current) = {
            let mut s = self.state.lock();
            let rotate = s
                .segments
                .get(&s.current)
                .is_some_and(|seg| seg.appended >= SEGMENT_RECORDS)
                || s.opened_at.elapsed() >= SEGMENT_AGE;
            if rotate && s.segments.contains_key(&s.current) {
                let current = s.current;
                self.close(&mut s, current);
                s.current += 1;
            }
            let current = s.current;
            let fresh = !s.segments.contains_key(&current);
            if fresh {
                s.opened_at = Instant::now();
            }
            let seg = match s.segments.entry(current) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => e.insert(Segment {
                    file: Some(Arc::new(
                        OpenOptions::new()
                            .create(true)
                            .append(true)
                            .open(segment_path(&self.dir, current))?,
                    )),
                    appended: 0,
                    written: 0,
                }),
            };
            // Counted before the write: the segment cannot be deleted (written >= appended)
            // while this line is on its way, since the record reaches the database after.
            seg.appended += 1;
            (
                seg.file.clone().expect("the current segment is open"),
                current,
            )
        };
        // The system call runs without the lock, so appends from both workers do not queue.
        if let Err(e) = (&*file).write_all(&line) {
            if let Some(seg) = self.state.lock().segments.get_mut(&current) {
                seg.appended -= 1;
            }
            return Err(e);
        }
        Ok(current)
    }

    /// Stop appending to `n`; delete it if the database already has all of it.
    fn close(&self, s: &mut State, n: u64) {
        if let Some(seg) = s.segments.get_mut(&n) {
            seg.file = None;
            if seg.written >= seg.appended {
                s.segments.remove(&n);
                let _ = std::fs::remove_file(segment_path(&self.dir, n));
            }
        }
    }

    /// After a graceful drain: close the current segment, deleting every fully written one.
    pub fn finish(&self) {
        let mut s = self.state.lock();
        let current = s.current;
        self.close(&mut s, current);
        let done: Vec<u64> = s
            .segments
            .iter()
            .filter(|(_, seg)| seg.file.is_none() && seg.written >= seg.appended)
            .map(|(n, _)| *n)
            .collect();
        for n in done {
            s.segments.remove(&n);
            let _ = std::fs::remove_file(segment_path(&self.dir, n));
        }
        s.current += 1;
    }

    /// `count` records of segment `n` are in the database.
    pub fn written(&self, n: u64, count: u64) {
        let mut s = self.state.lock();
        let current = s.current;
        if let Some(seg) = s.segments.get_mut(&n) {
            seg.written += count;
            if n != current && seg.written >= seg.appended {
                s.segments.remove(&n);
                let _ = std::fs::remove_file(segment_path(&self.dir, n));
            }
        }
    }
}

/// The records of a spool segment left by an earlier run. A torn last line (the process died
/// mid-write, before the request was answered) is skipped.
pub fn read_segment(path: &Path) -> anyhow::Result<Vec<GenerationRecord>> {
    let file = File::open(path)?;
    let mut out = Vec::new();
    for line in BufReader::new(file).lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<GenerationRecord>(&line) {
            Ok(r) => out.push(r),
            Err(e) => tracing::warn!("{}: skipping an unreadable spool line: {e}", path.display()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str) -> GenerationRecord {
        GenerationRecord {
            id: id.into(),
            ..Default::default()
        }
    }

    #[test]
    fn segments_go_once_written_and_survive_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, left) = Spool::open(dir.path()).unwrap();
        assert!(left.is_empty());
        let a = spool.append(&rec("gen-a")).unwrap();
        let b = spool.append(&rec("gen-b")).unwrap();
        assert_eq!(a, b);
        assert!(Spool::open(dir.path()).is_err(), "one process per spool");
        spool.written(a, 1);
        drop(spool);
        // Not everything was written: the segment stays, with both records, for the next start.
        let (spool, left) = Spool::open(dir.path()).unwrap();
        assert_eq!(left.len(), 1);
        let ids: Vec<String> = read_segment(&left[0])
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, ["gen-a", "gen-b"]);
        // A new run appends to a new segment.
        let c = spool.append(&rec("gen-c")).unwrap();
        assert!(c > a);
        {
            let mut s = spool.state.lock();
            s.opened_at = Instant::now() - SEGMENT_AGE;
        }
        let d = spool.append(&rec("gen-d")).unwrap();
        assert_eq!(d, c + 1, "rotated by age");
        spool.written(c, 1);
        assert!(
            !segment_path(dir.path(), c).exists(),
            "a closed, fully written segment is deleted"
        );
        assert!(segment_path(dir.path(), d).exists());
    }
}
