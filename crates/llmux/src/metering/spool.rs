//! The metering spool: every generation record is appended to a local file before its
//! request's final bytes leave, and the file is deleted once the database has every record
//! in it. What is written to a file's shared mapping survives the process being killed (the
//! kernel holds the pages, as for a `write(2)`), so a record whose client was answered is
//! never lost to a crash or `kill -9`; the next start replays what the spool still holds
//! (writes are idempotent by record id).
//!
//! One append is a copy of a framed record into the current segment's mapping: no system
//! call, no database and no fsync on the request path (a `write(2)` per record was a twentieth
//! of a request's CPU). Each segment is a file of [`SEGMENT_BYTES`], allocated when created and
//! cut to its records when closed (if the database does not have them all yet). Segments
//! rotate when full or after [`SEGMENT_AGE`]; a lock file keeps two processes off the same
//! spool.
//!
//! A frame is [`FRAME_MAGIC`], the payload's length and its CRC-32 (both little-endian `u32`),
//! then the record in MessagePack with its field names: read back like JSON (fields added
//! later take their defaults, fields at their default are left out), at a third of JSON's
//! cost to write (JSON was 6% of a request's instructions, `bench/instructions.sh`).
//! The checksum tells a record whose copy a crash cut short (its request was not answered:
//! it must not be billed) from a whole one. Segments of JSON lines, as earlier versions wrote
//! them, are still read.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use memmap2::MmapMut;
use parking_lot::Mutex;

use super::GenerationRecord;

/// A segment's size: about 2,700 records. Its pages are file-backed but counted in the
/// process's resident memory while mapped, and until it rotates (full, or ten seconds old at
/// an append) a segment filled by a burst keeps them all: at 8 MiB that was up to 8 MB more
/// for as long as the burst's segment stayed current. Rotating (a file created, allocated and
/// mapped, about 20 µs, and one deleted, about 100 µs) at 30,000 requests/s is then about
/// 0.15% of a core.
const SEGMENT_BYTES: usize = 2 << 20;
const SEGMENT_AGE: Duration = Duration::from_secs(10);
const EXTENSION: &str = "spool";
/// A frame's first byte: neither a zero (bytes never written) nor `{` (a JSON line).
const FRAME_MAGIC: u8 = 0xB7;
/// Magic, length, checksum.
const FRAME_HEADER: usize = 9;

struct Segment {
    /// The mapping appends copy into; `None` once the segment is closed.
    map: Option<MmapMut>,
    /// Bytes reserved so far.
    used: usize,
    appended: u64,
    written: u64,
}

struct State {
    current: u64,
    opened_at: Instant,
    segments: BTreeMap<u64, Segment>,
    /// The next segment, made ahead by [`Spool::prepare_next`] with its pages faulted in.
    ready: Option<(u64, MmapMut)>,
    /// A number [`Spool::prepare_next`] is making a segment for, outside the lock: rotation
    /// skips it rather than create the same file.
    preparing: Option<u64>,
}

impl State {
    /// On to the next segment number, past one being made by [`Spool::prepare_next`].
    fn advance(&mut self) {
        self.current += 1;
        if self.preparing == Some(self.current) {
            self.current += 1;
        }
    }
}

pub struct Spool {
    dir: PathBuf,
    state: Mutex<State>,
    /// Held for the spool's lifetime: the lock that keeps other processes out.
    _lock: File,
}

fn allocate(file: &File) -> std::io::Result<()> {
    use rustix::fs::{FallocateFlags, fallocate};
    match fallocate(file, FallocateFlags::empty(), 0, SEGMENT_BYTES as u64) {
        Ok(()) => Ok(()),
        // A file system without it (rare): the file is sized, and a full disk is not caught.
        Err(rustix::io::Errno::OPNOTSUPP) => file.set_len(SEGMENT_BYTES as u64),
        Err(e) => Err(e.into()),
    }
}

#[allow(unsafe_code)]
fn map(file: &File) -> std::io::Result<MmapMut> {
    // SAFETY (one of the crate's three `unsafe`s; see the workspace's lints): a mapped file
    // must not be truncated or changed by anyone else while mapped. Segments are created
    // here, appended to only through this mapping, and the spool's lock file keeps other
    // llmux processes out of the directory; a segment is unmapped before it is cut to its
    // records or deleted.
    unsafe { MmapMut::map_mut(file) }
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
                ready: None,
                preparing: None,
            }),
            _lock: lock,
        };
        Ok((spool, leftovers))
    }

    /// Append a record; returns the segment it went to (to report back once written).
    #[cfg(test)]
    pub fn append(&self, r: &GenerationRecord) -> std::io::Result<u64> {
        with_frame(r, |frame| self.append_frame(frame))?
    }

    /// Append a record encoded by [`with_frame`]; returns the segment it went to.
    pub fn append_frame(&self, frame: &[u8]) -> std::io::Result<u64> {
        if frame.len() > SEGMENT_BYTES {
            return Err(std::io::Error::other(format!(
                "a record of {} bytes does not fit in a spool segment",
                frame.len()
            )));
        }
        self.put(frame, frame.len())
    }

    /// Reserve room for `frame` in the current segment (rotating when it is full or
    /// old), count the record in it and copy the frame in: `copied` bytes of it, which is all
    /// of it except in tests of a crash mid-copy. Under the lock: the copy (a page fault now and
    /// then) and, once a segment, creating the next (about 20 µs); the closed segment's file
    /// is dealt with after.
    fn put(&self, frame: &[u8], copied: usize) -> std::io::Result<u64> {
        let mut after = None;
        let result = self.put_locked(frame, copied, &mut after);
        if let Some(work) = after {
            work.run();
        }
        result
    }

    fn put_locked(
        &self,
        frame: &[u8],
        copied: usize,
        after: &mut Option<FileWork>,
    ) -> std::io::Result<u64> {
        let mut s = self.state.lock();
        let rotate = s
            .segments
            .get(&s.current)
            .is_some_and(|seg| seg.used + frame.len() > SEGMENT_BYTES)
            || s.opened_at.elapsed() >= SEGMENT_AGE;
        if rotate && s.segments.contains_key(&s.current) {
            let current = s.current;
            *after = self.close(&mut s, current);
            s.advance();
        }
        let current = s.current;
        if !s.segments.contains_key(&current) {
            let map = match s.ready.take() {
                Some((n, map)) if n == current => map,
                _ => self.create_segment(current)?,
            };
            s.opened_at = Instant::now();
            s.segments.insert(
                current,
                Segment {
                    map: Some(map),
                    used: 0,
                    appended: 0,
                    written: 0,
                },
            );
        }
        let seg = s.segments.get_mut(&current).expect("just ensured");
        let map = seg.map.as_mut().expect("the current segment is open");
        map[seg.used..seg.used + copied].copy_from_slice(&frame[..copied]);
        seg.used += frame.len();
        seg.appended += 1;
        Ok(current)
    }

    /// Make the segment that follows the current one, with its pages faulted in, unless it is
    /// made already. Called by the metering writer after each batch: otherwise the serving
    /// threads' copies would fault each page in as they first touch it (a fault every five
    /// records or so, with the file system's work for it: 2% of a serving thread's time at
    /// one connection), and the rotating request would create the file.
    pub fn prepare_next(&self) {
        let n = {
            let mut s = self.state.lock();
            if s.ready.is_some() || s.preparing.is_some() || !s.segments.contains_key(&s.current) {
                return;
            }
            let n = s.current + 1;
            s.preparing = Some(n);
            n
        };
        let made = self.create_segment(n).inspect(|map| {
            // Linux 5.14 on; elsewhere the pages fault in as before.
            let _ = map.advise(memmap2::Advice::PopulateWrite);
        });
        let unused = {
            let mut s = self.state.lock();
            s.preparing = None;
            match made {
                // Still ahead of the current segment: kept for the rotation.
                Ok(map) if n > s.current => {
                    s.ready = Some((n, map));
                    false
                }
                // The spool moved past it meanwhile (finished, or rotated twice).
                Ok(map) => {
                    drop(map);
                    true
                }
                // The rotation will try again, and report it if it fails too.
                Err(e) => {
                    tracing::debug!("metering spool: making the next segment ahead: {e}");
                    false
                }
            }
        };
        if unused {
            FileWork::Delete(segment_path(&self.dir, n)).run();
        }
    }

    /// A new segment file, its blocks allocated up front: a copy into a mapping has no way to
    /// report a full disk but `SIGBUS`, so a full disk must fail here, as an error (the
    /// record then waits in memory only, and says so). Unwritten bytes read back as zeros.
    fn create_segment(&self, n: u64) -> std::io::Result<MmapMut> {
        let path = segment_path(&self.dir, n);
        let file = OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .open(&path)?;
        let mapped = allocate(&file).and_then(|()| map(&file));
        if mapped.is_err() {
            let _ = std::fs::remove_file(&path);
        }
        mapped
    }

    /// Stop appending to `n` (its mapping goes); what is left to do to its file, once the lock
    /// is released: delete it if the database already has all of it, else cut it to its
    /// records (the database may be down for hours, with a segment closed every ten seconds:
    /// the files keep their records, not 8 MiB each).
    fn close(&self, s: &mut State, n: u64) -> Option<FileWork> {
        let seg = s.segments.get_mut(&n)?;
        seg.map = None;
        let path = segment_path(&self.dir, n);
        if seg.written >= seg.appended {
            s.segments.remove(&n);
            Some(FileWork::Delete(path))
        } else if seg.used < SEGMENT_BYTES {
            Some(FileWork::Cut(path, seg.used as u64))
        } else {
            None
        }
    }

    /// After a graceful drain: close the current segment, deleting every fully written one.
    pub fn finish(&self) {
        let mut work = Vec::new();
        {
            let mut s = self.state.lock();
            let current = s.current;
            work.extend(self.close(&mut s, current));
            let done: Vec<u64> = s
                .segments
                .iter()
                .filter(|(_, seg)| seg.map.is_none() && seg.written >= seg.appended)
                .map(|(n, _)| *n)
                .collect();
            for n in done {
                s.segments.remove(&n);
                work.push(FileWork::Delete(segment_path(&self.dir, n)));
            }
            s.advance();
            if let Some((n, map)) = s.ready.take() {
                drop(map);
                work.push(FileWork::Delete(segment_path(&self.dir, n)));
            }
        }
        work.into_iter().for_each(FileWork::run);
    }

    /// `count` records of segment `n` are in the database.
    pub fn written(&self, n: u64, count: u64) {
        let delete = {
            let mut s = self.state.lock();
            let current = s.current;
            let Some(seg) = s.segments.get_mut(&n) else {
                return;
            };
            seg.written += count;
            if n == current || seg.written < seg.appended {
                return;
            }
            s.segments.remove(&n);
            FileWork::Delete(segment_path(&self.dir, n))
        };
        delete.run();
    }
}

/// What is left to do to a closed segment's file. Done without the spool's lock: unlinking a
/// segment takes about 100 µs here, which the serving threads' appends would wait for. Once
/// closed, a segment is not mapped and nothing copies into it.
enum FileWork {
    Delete(PathBuf),
    /// Cut to its records' bytes.
    Cut(PathBuf, u64),
}

impl FileWork {
    fn run(self) {
        let result = match &self {
            FileWork::Delete(path) => std::fs::remove_file(path),
            FileWork::Cut(path, len) => OpenOptions::new()
                .write(true)
                .open(path)
                .and_then(|f| f.set_len(*len)),
        };
        match result {
            // Cut after the database took its last records and the writer deleted it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                let path = match &self {
                    FileWork::Delete(p) | FileWork::Cut(p, _) => p,
                };
                tracing::warn!("{}: spool segment: {e}", path.display());
            }
            Ok(()) => {}
        }
    }
}

/// `f` given `r` encoded as one frame, in this thread's buffer (no allocation once it has grown
/// to the records' size).
pub fn with_frame<T>(r: &GenerationRecord, f: impl FnOnce(&[u8]) -> T) -> std::io::Result<T> {
    thread_local! {
        static FRAME: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(1024));
    }
    FRAME.with_borrow_mut(|frame| {
        encode_frame(r, frame)?;
        let out = f(frame);
        // A rare huge record (a long upstream error) does not stay allocated per thread.
        if frame.capacity() > 64 * 1024 {
            *frame = Vec::with_capacity(1024);
        }
        Ok(out)
    })
}

/// A frame's record, without the header (what [`decode_payload`] reads).
pub fn payload(frame: &[u8]) -> &[u8] {
    &frame[FRAME_HEADER..]
}

pub fn decode_payload(payload: &[u8]) -> Result<GenerationRecord, rmp_serde::decode::Error> {
    rmp_serde::from_slice(payload)
}

/// `r` as one frame, in `frame` (cleared first).
fn encode_frame(r: &GenerationRecord, frame: &mut Vec<u8>) -> std::io::Result<()> {
    frame.clear();
    frame.extend_from_slice(&[FRAME_MAGIC, 0, 0, 0, 0, 0, 0, 0, 0]);
    rmp_serde::encode::write_named(frame, r).map_err(std::io::Error::other)?;
    let payload = &frame[FRAME_HEADER..];
    let len = u32::try_from(payload.len()).map_err(std::io::Error::other)?;
    let crc = crc32fast::hash(payload);
    frame[1..5].copy_from_slice(&len.to_le_bytes());
    frame[5..9].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// The records of a spool segment left by an earlier run. Frames follow one another up to the
/// zero bytes never written. A frame whose checksum fails was cut short by a crash (before its
/// request was answered) and is skipped. Copies into a segment are made one at a time under
/// the spool's lock, so a crash can cut only the last one: bytes after the frames that are
/// not zeros are such a cut (a header cut short) and end the segment.
pub fn read_segment(path: &Path) -> anyhow::Result<Vec<GenerationRecord>> {
    let bytes = std::fs::read(path)?;
    if bytes.first() == Some(&b'{') {
        return Ok(read_json_lines(path, &bytes));
    }
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(header) = bytes.get(at..at + FRAME_HEADER) {
        if header[0] != FRAME_MAGIC {
            break;
        }
        let len = u32::from_le_bytes([header[1], header[2], header[3], header[4]]) as usize;
        let crc = u32::from_le_bytes([header[5], header[6], header[7], header[8]]);
        let Some(payload) = bytes.get(at + FRAME_HEADER..at + FRAME_HEADER + len) else {
            break;
        };
        at += FRAME_HEADER + len;
        if crc32fast::hash(payload) != crc {
            tracing::warn!("{}: skipping a spool record cut short", path.display());
            continue;
        }
        match decode_payload(payload) {
            Ok(r) => out.push(r),
            Err(e) => tracing::warn!(
                "{}: skipping an unreadable spool record: {e}",
                path.display()
            ),
        }
    }
    if bytes[at.min(bytes.len())..].iter().any(|b| *b != 0) {
        tracing::warn!("{}: skipping a spool record cut short", path.display());
    }
    Ok(out)
}

/// A segment of JSON lines, as written before frames: lines end at a newline or at the zero
/// bytes never written, and a torn line is skipped. JSON escapes both bytes inside strings,
/// so neither splits a record.
fn read_json_lines(path: &Path, bytes: &[u8]) -> Vec<GenerationRecord> {
    let mut out = Vec::new();
    for line in bytes.split(|b| *b == b'\n' || *b == 0) {
        if line.trim_ascii().is_empty() {
            continue;
        }
        match serde_json::from_slice::<GenerationRecord>(line) {
            Ok(r) => out.push(r),
            Err(e) => tracing::warn!("{}: skipping an unreadable spool line: {e}", path.display()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ids of a segment's records, in order.
    fn ids_in(path: &Path) -> Vec<String> {
        read_segment(path)
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect()
    }

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
        let ids = ids_in(&left[0]);
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

    /// Rotate by age at the next append.
    fn age(spool: &Spool) {
        spool.state.lock().opened_at = Instant::now() - SEGMENT_AGE;
    }

    #[test]
    fn the_next_segment_is_made_ahead_and_used() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(dir.path()).unwrap();
        let a = spool.append(&rec("gen-a")).unwrap();
        spool.prepare_next();
        let next = segment_path(dir.path(), a + 1);
        assert!(next.exists(), "made ahead");
        spool.prepare_next();
        assert!(
            !segment_path(dir.path(), a + 2).exists(),
            "one ahead at most"
        );
        age(&spool);
        assert_eq!(spool.append(&rec("gen-b")).unwrap(), a + 1);
        assert!(spool.state.lock().ready.is_none(), "taken by the rotation");
        assert_eq!(ids_in(&next), ["gen-b"]);

        // A rotation while the next one is being made skips its number.
        spool.state.lock().preparing = Some(a + 2);
        age(&spool);
        assert_eq!(spool.append(&rec("gen-c")).unwrap(), a + 3);
        spool.state.lock().preparing = None;

        // Finishing deletes the one made ahead, and nothing else is left.
        spool.prepare_next();
        assert!(segment_path(dir.path(), a + 4).exists());
        spool.written(a, 1);
        spool.written(a + 1, 1);
        spool.written(a + 3, 1);
        spool.finish();
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, ["lock"]);
    }

    #[test]
    fn a_record_cut_short_by_a_crash_costs_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(dir.path()).unwrap();
        let a = spool.append(&rec("gen-a")).unwrap();
        // Room reserved, then the process dies partway through copying the frame: its header
        // is whole, its record is not (zeros would decode as a record of empty fields).
        let mut frame = Vec::new();
        encode_frame(&rec("gen-b"), &mut frame).unwrap();
        let b = spool.put(&frame, frame.len() - 3).unwrap();
        let c = spool.append(&rec("gen-c")).unwrap();
        // And the last copy cut within its header.
        let d = spool.put(&frame, 4).unwrap();
        assert_eq!((a, b, c), (b, c, d));
        drop(spool);
        let (_, left) = Spool::open(dir.path()).unwrap();
        let ids = ids_in(&left[0]);
        assert_eq!(ids, ["gen-a", "gen-c"]);
    }

    #[test]
    fn records_queued_encoded_read_back_whole() {
        // What the meter sends its writer: the frame's payload, read back by the writer.
        let (sparse, full) = super::super::record::sparse_and_full();
        for r in [sparse, full] {
            let payload = with_frame(&r, |frame| payload(frame).to_vec()).unwrap();
            assert_eq!(decode_payload(&payload).unwrap(), r);
        }
    }

    #[test]
    fn records_read_back_whole() {
        let (sparse, full) = super::super::record::sparse_and_full();
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(dir.path()).unwrap();
        spool.append(&sparse).unwrap();
        spool.append(&full).unwrap();
        drop(spool);
        let (_, left) = Spool::open(dir.path()).unwrap();
        assert_eq!(read_segment(&left[0]).unwrap(), [sparse, full]);
    }

    #[test]
    fn segments_of_json_lines_from_earlier_versions_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = segment_path(dir.path(), 7);
        let mut bytes = Vec::new();
        for id in ["gen-a", "gen-b"] {
            serde_json::to_writer(&mut bytes, &rec(id)).unwrap();
            bytes.push(b'\n');
        }
        // A line torn by a crash, then the zeros never written.
        bytes.extend_from_slice(br#"{"id":"gen-c","crea"#);
        bytes.resize(bytes.len() + 4096, 0);
        std::fs::write(&path, bytes).unwrap();
        let (_, left) = Spool::open(dir.path()).unwrap();
        assert_eq!(left, std::slice::from_ref(&path));
        assert_eq!(ids_in(&path), ["gen-a", "gen-b"]);
    }

    #[test]
    fn a_full_segment_rotates_and_keeps_every_record() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(dir.path()).unwrap();
        let big = GenerationRecord {
            error: Some("x".repeat(SEGMENT_BYTES / 3)),
            ..rec("gen-0")
        };
        let mut segments = Vec::new();
        for i in 0..4 {
            let r = GenerationRecord {
                id: format!("gen-{i}"),
                ..big.clone()
            };
            segments.push(spool.append(&r).unwrap());
        }
        // Two records fill a segment: the third starts the next one.
        assert_eq!(segments[0], segments[1]);
        assert_eq!(segments[2], segments[0] + 1);
        assert_eq!(segments[3], segments[2]);
        let too_big = GenerationRecord {
            error: Some("x".repeat(SEGMENT_BYTES)),
            ..rec("gen-huge")
        };
        assert!(spool.append(&too_big).is_err());
        let first = ids_in(&segment_path(dir.path(), segments[0]));
        assert_eq!(first, ["gen-0", "gen-1"]);
        // Closed while its records wait for the database: only their bytes are kept.
        let frame_len = |id: &str| {
            let r = GenerationRecord {
                id: id.into(),
                ..big.clone()
            };
            let mut frame = Vec::new();
            encode_frame(&r, &mut frame).unwrap();
            frame.len() as u64
        };
        let kept = std::fs::metadata(segment_path(dir.path(), segments[0]))
            .unwrap()
            .len();
        assert_eq!(kept, frame_len("gen-0") + frame_len("gen-1"));
        spool.written(segments[0], 2);
        assert!(!segment_path(dir.path(), segments[0]).exists());
        assert!(segment_path(dir.path(), segments[2]).exists());
    }
}
