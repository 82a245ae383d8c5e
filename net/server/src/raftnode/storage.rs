//! The Raft log storage over the WAL (etcd's design): a [`MemStorage`] holds the entries since
//! the last snapshot and is what the Raft core reads; the WAL is the durability point. Every
//! Ready's entries and hard state are queued to the WAL ([`LogStore::queue`]) and enter the
//! `MemStorage` only once that append is durable ([`LogStore::written`]) — so the Raft core only
//! ever sees its own entries as stable once durable (the leader counts itself toward a quorum
//! only then, S5; a follower's Append answer is a `persisted_message`, sent after). Appends are
//! queued in Ready order and become durable in that order; a received snapshot is written
//! in place ([`LogStore::persist`]).
//!
//! Owns the WAL directory (through [`Wal`]; `NodeConfig::wal_dir`, by default `<data_dir>/wal/`)
//! and `<data_dir>/snap/`: per snapshot a
//! `<index:016x>.meta` (index, term, membership, optional payload length and CRC32C; itself
//! CRC32C-checked, D1) and, for snapshots received from a leader, the payload
//! `<index:016x>.snap`. The WAL's snapshot marker carries no membership; the meta file does, and
//! is written (synced, renamed, directory synced) before the marker.
//!
//! Also owns the membership history since the snapshot (`confs`), so a snapshot at any retained
//! index carries the right membership and a restart knows the membership as of the applied index.

use super::frame::{code_entry_kind, entry_kind_code};
use super::{LogEvent, NodeConfig, NodeError};
use keel_raft::consensus::{
    ConfChange, ConfState, Entry, EntryKind, HardState, MemStorage, Ready, Snapshot, SnapshotMeta,
    Storage,
};
use keel_raft::wal::{self, SnapshotMarker, Wal, WalEntry};
use std::path::{Path, PathBuf};

const META_MAGIC: u32 = u32::from_le_bytes(*b"KLSM");

/// What a snapshot meta file records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapMeta {
    /// Last index covered.
    pub index: u64,
    /// Its term.
    pub term: u64,
    /// Membership at `index`.
    pub conf_state: ConfState,
    /// `(length, CRC32C)` of the payload file, for snapshots received from a leader.
    pub payload: Option<(u64, u32)>,
}

impl SnapMeta {
    /// The meta file's bytes (CRC32C over everything before the last four bytes).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&META_MAGIC.to_le_bytes());
        b.extend_from_slice(&self.index.to_le_bytes());
        b.extend_from_slice(&self.term.to_le_bytes());
        for ids in [&self.conf_state.voters, &self.conf_state.learners] {
            b.extend_from_slice(&(ids.len() as u32).to_le_bytes());
            ids.iter()
                .for_each(|i| b.extend_from_slice(&i.to_le_bytes()));
        }
        match self.payload {
            None => b.push(0),
            Some((len, crc)) => {
                b.push(1);
                b.extend_from_slice(&len.to_le_bytes());
                b.extend_from_slice(&crc.to_le_bytes());
            }
        }
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parses and checks [`SnapMeta::encode`]'s output (D1: any mismatch is an error).
    pub fn decode(b: &[u8]) -> Result<Self, String> {
        if b.len() < 8 {
            return Err("meta file too short".into());
        }
        let (body, tail) = b.split_at(b.len() - 4);
        let want = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
        if crc32c::crc32c(body) != want {
            return Err("meta file checksum mismatch".into());
        }
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u8], String> {
            let s = body.get(at..at + n).ok_or("meta file truncated")?;
            at += n;
            Ok(s)
        };
        let u64_of = |s: &[u8]| u64::from_le_bytes(s.try_into().expect("8 bytes"));
        let u32_of = |s: &[u8]| u32::from_le_bytes(s.try_into().expect("4 bytes"));
        if u32_of(take(4)?) != META_MAGIC {
            return Err("meta file magic".into());
        }
        let index = u64_of(take(8)?);
        let term = u64_of(take(8)?);
        let mut lists = Vec::new();
        for _ in 0..2 {
            let n = u32_of(take(4)?) as usize;
            if n > body.len() / 8 {
                return Err("meta file member count".into());
            }
            let mut ids = Vec::with_capacity(n);
            for _ in 0..n {
                ids.push(u64_of(take(8)?));
            }
            lists.push(ids);
        }
        let payload = match take(1)?[0] {
            0 => None,
            1 => Some((u64_of(take(8)?), u32_of(take(4)?))),
            _ => return Err("meta file payload flag".into()),
        };
        if at != body.len() {
            return Err("meta file trailing bytes".into());
        }
        let learners = lists.pop().expect("two lists");
        let voters = lists.pop().expect("two lists");
        Ok(SnapMeta {
            index,
            term,
            conf_state: ConfState { voters, learners },
            payload,
        })
    }
}

fn snap_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("snap")
}

/// The meta file of the snapshot at `index`.
pub fn meta_path(data_dir: &Path, index: u64) -> PathBuf {
    snap_dir(data_dir).join(format!("{index:016x}.meta"))
}

/// The payload file of the received snapshot at `index`.
pub fn payload_path(data_dir: &Path, index: u64) -> PathBuf {
    snap_dir(data_dir).join(format!("{index:016x}.snap"))
}

/// Writes `bytes` to `path` durably: temporary file, sync, rename, directory sync. Runs on
/// glommio's blocking pool (plain file syscalls never run on the loop, DESIGN.md §2).
async fn write_durable(path: PathBuf, bytes: Vec<u8>) -> Result<(), NodeError> {
    let shown = path.display().to_string();
    let job = move || -> std::io::Result<()> {
        use std::io::Write;
        let dir = path.parent().expect("file in a directory").to_path_buf();
        std::fs::create_dir_all(&dir)?;
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(&dir)?.sync_all()
    };
    glommio::executor()
        .spawn_blocking(job)
        .await
        .map_err(|e| NodeError::Storage(format!("writing {shown}: {e}")))
}

async fn read_file(path: PathBuf) -> Result<Option<Vec<u8>>, NodeError> {
    let shown = path.display().to_string();
    glommio::executor()
        .spawn_blocking(move || match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })
        .await
        .map_err(|e| NodeError::Storage(format!("reading {shown}: {e}")))
}

/// Removes the snapshot files older than `keep` (best effort: leftovers are only disk space).
async fn remove_older(data_dir: PathBuf, keep: u64) {
    glommio::executor()
        .spawn_blocking(move || {
            let Ok(rd) = std::fs::read_dir(snap_dir(&data_dir)) else {
                return;
            };
            for f in rd.flatten() {
                let name = f.file_name().to_string_lossy().to_string();
                let idx = name
                    .split('.')
                    .next()
                    .and_then(|h| u64::from_str_radix(h, 16).ok());
                if idx.is_some_and(|i| i < keep) {
                    let _ = std::fs::remove_file(f.path());
                }
            }
        })
        .await
}

/// WAL bytes of an entry beyond its data (record header 12 + index, term, kind 17), rounded up.
const ENTRY_OVERHEAD: usize = 32;

/// Splits `entries` into runs of at most `limit` WAL bytes (an entry alone may exceed it only
/// if the gateway let it through, and then the WAL refuses it).
fn chunk(entries: &[Entry], limit: usize) -> impl Iterator<Item = &[Entry]> {
    let mut rest = entries;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = 0usize;
        let mut n = 0;
        while n < rest.len() {
            bytes += rest[n].data.len() + ENTRY_OVERHEAD;
            if n > 0 && bytes > limit {
                break;
            }
            n += 1;
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Some(head)
    })
}

fn to_wal(e: &Entry) -> WalEntry {
    WalEntry {
        index: e.index,
        term: e.term,
        kind: entry_kind_code(e.kind),
        data: e.data.clone(),
    }
}

fn from_wal(e: WalEntry) -> Result<Entry, NodeError> {
    let kind = code_entry_kind(e.kind)
        .ok_or_else(|| NodeError::Storage(format!("entry {} has kind {}", e.index, e.kind)))?;
    Ok(Entry {
        index: e.index,
        term: e.term,
        kind,
        data: e.data,
    })
}

fn to_wal_hs(hs: HardState) -> wal::HardState {
    wal::HardState {
        term: hs.term,
        vote: hs.vote,
        commit: hs.commit,
    }
}

/// The result of opening the log storage.
pub struct Opened {
    /// The storage.
    pub store: LogStore,
    /// The index the Raft core resumes applying after.
    pub applied: u64,
    /// A snapshot the apply side must install before anything else (a restart that crashed
    /// between receiving a snapshot and the state machine making it durable).
    pub install: Option<LogEvent>,
}

/// The WAL-backed Raft log storage. See the module documentation.
pub struct LogStore {
    wal: Wal,
    mem: MemStorage,
    data_dir: PathBuf,
    /// Membership history: `(index, membership after index)`, ascending; the first item is the
    /// membership at the snapshot.
    confs: Vec<(u64, ConfState)>,
    /// Bytes per WAL append: within the WAL's group and segment limits.
    max_append: usize,
    /// A hard state whose only change was the commit index, not written yet (see `queue`).
    unsynced_hs: Option<HardState>,
    /// The term and vote of the last hard state queued (written or not yet durable).
    queued_term_vote: (u64, u64),
}

/// One Ready's append, queued to the WAL and not yet known durable.
pub struct Queued {
    /// The WAL ticket to wait for; `None` when the Ready had nothing to write.
    pub ticket: Option<u64>,
    entries: Vec<Entry>,
    hard_state: Option<HardState>,
}

impl Queued {
    /// `(index, term)` of the last entry it carries.
    pub fn last(&self) -> Option<(u64, u64)> {
        self.entries.last().map(|e| (e.index, e.term))
    }
}

/// Bytes per WAL append for `cfg`: a group must fit a segment (less its header block and
/// checkpoint, hence the half) and records stay under the WAL's 16 MiB payload limit.
fn max_append(cfg: &NodeConfig) -> usize {
    let seg = (cfg.wal.segment_size / 2) as usize;
    // The WAL's record payload limit (16 MiB, `wal::record::MAX_PAYLOAD_LEN`, not exported).
    const WAL_MAX_PAYLOAD: usize = 16 << 20;
    cfg.wal
        .max_group_bytes
        .min(seg)
        .clamp(4096, WAL_MAX_PAYLOAD)
}

impl LogStore {
    /// Opens the WAL under `cfg.data_dir`. A new directory bootstraps the initial membership
    /// (every peer a voter, etcd's bootstrap) deterministically, as committed entries 1..=n
    /// written to the WAL. A used one is rebuilt from the snapshot marker, its meta file, the
    /// entries and the hard state. `applied` is the state machine's durable applied index.
    pub async fn open(cfg: &NodeConfig, applied: u64) -> Result<Opened, NodeError> {
        let wal = Wal::open(&cfg.wal_dir, cfg.wal.clone()).await?;
        let marker = wal.snapshot();
        let whs = wal.hard_state();
        if wal.last_index() == 0 && marker.index == 0 && whs == wal::HardState::default() {
            if applied != 0 {
                return Err(NodeError::Config(format!(
                    "no WAL in {} but the state machine has applied {applied} (was this \
                     member started with another --wal-dir?)",
                    cfg.wal_dir.display()
                )));
            }
            if cfg.join {
                // Joining: no membership of our own; the leader's log or snapshot brings it.
                let store = LogStore {
                    wal,
                    mem: MemStorage::new(),
                    data_dir: cfg.data_dir.clone(),
                    confs: vec![(0, ConfState::default())],
                    max_append: max_append(cfg),
                    unsynced_hs: None,
                    queued_term_vote: (0, 0),
                };
                return Ok(Opened {
                    store,
                    applied: 0,
                    install: None,
                });
            }
            let voters: Vec<u64> = cfg.peers.keys().copied().collect();
            let boot = MemStorage::bootstrap(&voters);
            let last = boot.last_index().expect("mem storage");
            let bhs = boot.hard_state();
            let entries = boot.entries(1, last + 1, u64::MAX).expect("mem storage");
            wal.append(
                entries.iter().map(to_wal).collect(),
                Some(to_wal_hs(boot.hard_state())),
            )
            .await?;
            let store = LogStore {
                wal,
                mem: boot,
                data_dir: cfg.data_dir.clone(),
                confs: vec![(0, ConfState::default())],
                max_append: max_append(cfg),
                unsynced_hs: None,
                queued_term_vote: (bhs.term, bhs.vote),
            };
            return Ok(Opened {
                store,
                applied: 0,
                install: None,
            });
        }
        let meta = if marker.index > 0 {
            let path = meta_path(&cfg.data_dir, marker.index);
            let b = read_file(path.clone()).await?.ok_or_else(|| {
                NodeError::Storage(format!("missing snapshot meta {}", path.display()))
            })?;
            let m = SnapMeta::decode(&b)
                .map_err(|e| NodeError::Storage(format!("{}: {e}", path.display())))?;
            if (m.index, m.term) != (marker.index, marker.term) {
                return Err(NodeError::Storage(format!(
                    "{} describes ({}, {}), the WAL's marker is ({}, {})",
                    path.display(),
                    m.index,
                    m.term,
                    marker.index,
                    marker.term
                )));
            }
            m
        } else {
            SnapMeta {
                index: 0,
                term: 0,
                conf_state: ConfState::default(),
                payload: None,
            }
        };
        let last = wal.last_index();
        let entries: Vec<Entry> = wal
            .entries(marker.index + 1, last + 1)
            .await?
            .into_iter()
            .map(from_wal)
            .collect::<Result<_, _>>()?;
        let hs = HardState {
            term: whs.term,
            vote: whs.vote,
            commit: whs.commit.max(marker.index),
        };
        // Where the Raft core resumes: the state machine's index, or the snapshot if it is
        // behind it (possible only after a crash between receiving a snapshot and the state
        // machine making it durable: then the payload file is here to install again).
        let mut install = None;
        let resume = if applied < marker.index {
            let Some((len, crc)) = meta.payload else {
                return Err(NodeError::Config(format!(
                    "the state machine applied {applied}, behind the log's snapshot at {} \
                     and no snapshot payload is stored",
                    marker.index
                )));
            };
            let path = payload_path(&cfg.data_dir, marker.index);
            let b = read_file(path.clone()).await?.unwrap_or_default();
            if b.len() as u64 != len || crc32c::crc32c(&b) != crc {
                return Err(NodeError::Storage(format!(
                    "snapshot payload {} is damaged",
                    path.display()
                )));
            }
            install = Some(LogEvent::InstallSnapshot {
                path,
                index: meta.index,
                term: meta.term,
                conf_state: meta.conf_state.clone(),
            });
            marker.index
        } else {
            applied
        };
        if resume > last.max(marker.index) {
            return Err(NodeError::Config(format!(
                "the state machine applied {resume}, past the log's last index {}",
                last.max(marker.index)
            )));
        }
        // The state machine applies only committed entries, so its index is a commit index
        // the stored hard state may lag (commit-only changes are not synced, see `persist`).
        let hs = HardState {
            commit: hs.commit.max(resume),
            ..hs
        };
        // Membership as of `resume`: the snapshot's, then each membership entry up to it (the
        // loop applies the later ones as it re-delivers them).
        let mut confs = vec![(meta.index, meta.conf_state.clone())];
        for e in entries.iter().filter(|e| e.index <= resume) {
            if e.kind == EntryKind::ConfChange {
                let cc = ConfChange::decode(&e.data).map_err(|err| {
                    NodeError::Storage(format!("membership entry {}: {err}", e.index))
                })?;
                let next = cc.apply(&confs.last().expect("nonempty").1);
                confs.push((e.index, next));
            }
        }
        let now = confs.last().expect("nonempty").1.clone();
        let mem = MemStorage::new_with_conf_state(now.clone());
        if marker.index > 0 {
            // The membership stored with MemStorage's snapshot is what the Raft core starts
            // from, so it is the one as of `resume`; snapshots sent to followers get their
            // membership from `confs` instead (see `conf_at`).
            mem.apply_snapshot(Snapshot {
                meta: SnapshotMeta {
                    index: marker.index,
                    term: marker.term,
                    conf_state: now,
                },
                data: Vec::new(),
            });
        }
        mem.append(&entries);
        mem.set_hard_state(hs);
        let store = LogStore {
            wal,
            mem,
            data_dir: cfg.data_dir.clone(),
            confs,
            max_append: max_append(cfg),
            unsynced_hs: None,
            queued_term_vote: (hs.term, hs.vote),
        };
        Ok(Opened {
            store,
            applied: resume,
            install,
        })
    }

    /// The storage handle the Raft core reads (shares state with this store).
    pub fn mem(&self) -> MemStorage {
        self.mem.clone()
    }

    /// The WAL (for closing).
    pub fn wal(&self) -> &Wal {
        &self.wal
    }

    /// Membership as of `index` (which must not precede the snapshot).
    pub fn conf_at(&self, index: u64) -> ConfState {
        self.confs
            .iter()
            .rev()
            .find(|(i, _)| *i <= index)
            .unwrap_or(&self.confs[0])
            .1
            .clone()
    }

    /// Records the membership after the membership entry at `index`.
    pub fn record_conf(&mut self, index: u64, cs: ConfState) {
        self.confs.push((index, cs));
    }

    /// The index of the last snapshot.
    pub fn snapshot_index(&self) -> u64 {
        self.wal.snapshot().index
    }

    /// Makes `rd`'s snapshot, entries and hard state durable, then visible to the Raft core
    /// (the ordering that makes the Ready contract hold), waiting for every append queued
    /// before. Returns the install event for a snapshot received from the leader.
    pub async fn persist(&mut self, rd: &Ready) -> Result<Option<LogEvent>, NodeError> {
        let mut install = None;
        if let Some(s) = &rd.snapshot {
            install = Some(self.persist_received_snapshot(s).await?);
        }
        let q = self.queue(rd.entries.clone(), rd.hard_state, rd.snapshot.is_some())?;
        if let Some(t) = q.ticket {
            self.wal.durable(t).await?;
        }
        self.written(q);
        Ok(install)
    }

    /// Queues a Ready's entries and hard state to the WAL behind every earlier append, without
    /// waiting (a snapshot is [`LogStore::persist`]'s; `with_snapshot` says the Ready had one).
    /// Once the returned ticket is durable, hand the [`Queued`] to [`LogStore::written`], in
    /// queue order.
    pub fn queue(
        &mut self,
        entries: Vec<Entry>,
        hard_state: Option<HardState>,
        with_snapshot: bool,
    ) -> Result<Queued, NodeError> {
        let mut q = Queued {
            ticket: None,
            entries: Vec::new(),
            hard_state: None,
        };
        if entries.is_empty() && !with_snapshot {
            if let Some(hs) = hard_state {
                if (hs.term, hs.vote) == self.queued_term_vote {
                    // Only the commit index moved. It is volatile state (Raft paper, Figure
                    // 2): nothing waits for it to be durable, so it rides along with the next
                    // append instead of costing a WAL sync on every commit, and a restart
                    // recovers it from the state machine's applied index (see `open`).
                    self.mem.set_hard_state(hs);
                    self.unsynced_hs = Some(hs);
                    return Ok(q);
                }
            }
        }
        let ready_hs = hard_state;
        let hard_state = hard_state.or(self.unsynced_hs);
        if entries.is_empty() && hard_state.is_none() {
            return Ok(q);
        }
        // Entries (a conflicting suffix is truncated by the WAL) + hard state, in as few
        // appends as the WAL's size limits allow (one in the common case), the hard state with
        // the last; they become visible to the Raft core only once durable (`written`).
        let mut ticket = None;
        let mut chunks = chunk(&entries, self.max_append).peekable();
        if chunks.peek().is_none() {
            ticket = Some(
                self.wal
                    .queue_append(Vec::new(), hard_state.map(to_wal_hs))?,
            );
        }
        while let Some(c) = chunks.next() {
            let hs = if chunks.peek().is_none() {
                hard_state.map(to_wal_hs)
            } else {
                None
            };
            ticket = Some(self.wal.queue_append(c.iter().map(to_wal).collect(), hs)?);
        }
        drop(chunks);
        self.unsynced_hs = None;
        if let Some(hs) = hard_state {
            self.queued_term_vote = (hs.term, hs.vote);
        }
        q.ticket = ticket;
        q.entries = entries;
        q.hard_state = ready_hs;
        Ok(q)
    }

    /// `q`'s append is durable: its entries and hard state become visible to the Raft core's
    /// storage. Called in queue order.
    pub fn written(&mut self, q: Queued) {
        self.mem.append(&q.entries);
        if let Some(hs) = q.hard_state {
            // A commit-only hard state queued later may already be in memory (`queue` sets it
            // at once): the commit index never moves back.
            let commit = hs.commit.max(self.mem.hard_state().commit);
            self.mem.set_hard_state(HardState { commit, ..hs });
        }
    }

    /// The largest entry payload the WAL accepts under this configuration: proposals above it
    /// are refused at the gateway rather than failing the WAL.
    pub fn max_entry_bytes(&self) -> usize {
        self.max_append.saturating_sub(ENTRY_OVERHEAD)
    }

    async fn persist_received_snapshot(&mut self, s: &Snapshot) -> Result<LogEvent, NodeError> {
        let m = &s.meta;
        let payload = payload_path(&self.data_dir, m.index);
        write_durable(payload.clone(), s.data.clone()).await?;
        let meta = SnapMeta {
            index: m.index,
            term: m.term,
            conf_state: m.conf_state.clone(),
            payload: Some((s.data.len() as u64, crc32c::crc32c(&s.data))),
        };
        write_durable(meta_path(&self.data_dir, m.index), meta.encode()).await?;
        self.wal
            .save_snapshot(SnapshotMarker {
                index: m.index,
                term: m.term,
            })
            .await?;
        if self.wal.last_index() > m.index {
            // The snapshot replaces the whole log: entries past it may conflict with the
            // leader's, and a restart must not read them back.
            self.wal.truncate_suffix(m.index + 1).await?;
        }
        self.mem.apply_snapshot(Snapshot {
            meta: m.clone(),
            data: Vec::new(),
        });
        self.confs = vec![(m.index, m.conf_state.clone())];
        remove_older(self.data_dir.clone(), m.index).await;
        Ok(LogEvent::InstallSnapshot {
            path: payload,
            index: m.index,
            term: m.term,
            conf_state: m.conf_state.clone(),
        })
    }

    /// Log compaction: once the state machine's durable index is more than `snapshot_count`
    /// past the last snapshot, records a snapshot there (meta file, then WAL marker) and drops
    /// the entries more than `catch_up` behind it from memory and (whole segments) the WAL.
    /// `durable` must not exceed what was handed to the apply side. Returns whether it compacted.
    pub async fn maybe_compact(
        &mut self,
        durable: u64,
        snapshot_count: u64,
        catch_up: u64,
    ) -> Result<bool, NodeError> {
        let snap = self.wal.snapshot().index;
        if durable <= snap || durable - snap <= snapshot_count {
            return Ok(false);
        }
        let term = self
            .mem
            .term(durable)
            .map_err(|e| NodeError::Storage(format!("term of {durable}: {e}")))?;
        let conf_state = self.conf_at(durable);
        let meta = SnapMeta {
            index: durable,
            term,
            conf_state: conf_state.clone(),
            payload: None,
        };
        write_durable(meta_path(&self.data_dir, durable), meta.encode()).await?;
        self.wal
            .save_snapshot(SnapshotMarker {
                index: durable,
                term,
            })
            .await?;
        self.mem.create_snapshot(durable, conf_state, Vec::new());
        let first = self.mem.first_index().expect("mem storage");
        let to = durable.saturating_sub(catch_up);
        if to >= first {
            self.mem.compact(to);
            self.wal.compact(to).await?;
        }
        // Keep the membership as of the snapshot and every change after it.
        let keep_from = self
            .confs
            .iter()
            .rposition(|(i, _)| *i <= durable)
            .unwrap_or(0);
        self.confs.drain(..keep_from);
        remove_older(self.data_dir.clone(), durable).await;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_respect_the_byte_limit_and_cover_every_entry_in_order() {
        let es: Vec<Entry> = (1..=50u64)
            .map(|i| Entry {
                index: i,
                term: 1,
                kind: EntryKind::Normal,
                data: vec![0; (i as usize * 37) % 300],
            })
            .collect();
        for limit in [1, 64, 500, 4096, usize::MAX] {
            let cs: Vec<&[Entry]> = chunk(&es, limit).collect();
            let flat: Vec<Entry> = cs.iter().flat_map(|c| c.iter().cloned()).collect();
            assert_eq!(flat, es);
            for c in &cs {
                let bytes: usize = c.iter().map(|e| e.data.len() + ENTRY_OVERHEAD).sum();
                assert!(c.len() == 1 || bytes <= limit, "chunk of {bytes} > {limit}");
            }
        }
        assert_eq!(chunk(&[], 10).count(), 0);
    }

    #[test]
    fn meta_round_trips_and_refuses_damage() {
        let m = SnapMeta {
            index: 77,
            term: 3,
            conf_state: ConfState {
                voters: vec![1, 2, 3],
                learners: vec![9],
            },
            payload: Some((1000, 0xdead_beef)),
        };
        let b = m.encode();
        assert_eq!(SnapMeta::decode(&b), Ok(m));
        for at in 0..b.len() {
            let mut d = b.clone();
            d[at] ^= 0x10;
            assert!(SnapMeta::decode(&d).is_err(), "flip at {at} accepted");
        }
        for n in 0..b.len() {
            assert!(SnapMeta::decode(&b[..n]).is_err());
        }
    }
}
