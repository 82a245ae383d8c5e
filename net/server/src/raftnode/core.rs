//! The log core's loop: ticks, takes every queued input, steps the Raft core, and handles each
//! Ready in the order the Ready contract requires (DESIGN.md §3), with WAL writes pipelined:
//!
//! 1. send `messages` at once (a leader's Appends go out while its own WAL write runs, Raft
//!    thesis §10.2.1);
//! 2. queue entries and hard state to the WAL ([`LogStore::queue`]) and go on without waiting:
//!    the next Ready (new proposals, the answers of followers) is taken while this write runs,
//!    and group commit puts the writes queued meanwhile into the next group;
//! 3. apply membership entries to the Raft core, answer confirmed reads, `advance_handed`, and
//!    hand the committed entries to the apply side through the bounded apply channel — the Raft
//!    core only offers entries already durable in this member's WAL;
//! 4. when a write is durable (WAL writes complete in queue order; a waiter task per write
//!    reports it through the inbox), its entries enter the Raft log storage, the Raft core
//!    learns it (`on_persisted`: a leader counts itself only now) and that Ready's
//!    `persisted_messages` go out (votes, Append answers: only after persistence, R1).
//!
//! A Ready with a snapshot waits for every queued write, then is persisted in place
//! ([`LogStore::persist`]) and `advance`d.
//!
//! Owns the [`RawNode`], the [`LogStore`], the [`Transport`], the writes in flight and the
//! pending proposals and read rounds. Everything runs on one glommio executor; the only waits
//! are the apply channel (back-pressure), the tick timer and a snapshot Ready's writes.

use super::inbox::Inbox;
use super::storage::{LogStore, Queued};
use super::transport::Transport;
use super::{LogCore, LogEvent, NodeError, ReadAnswer, Refusal, Request, SnapshotSource};
use glommio::timer::Timer;
use keel_raft::consensus::{
    ConfChange, Config, Entry, EntryKind, MemStorage, Message, MessageKind, NodeId, RaftError,
    RawNode, ReadState, Ready, Snapshot, SnapshotMeta, NO_NODE,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An input of the loop, queued in its [`Inbox`].
pub enum Ev {
    /// A request from producer `0`.
    Client(usize, Request),
    /// A message from a peer.
    Peer(Message),
    /// A peer could not be reached.
    Unreachable(NodeId),
    /// A snapshot to this peer was written to its connection (true) or failed (false).
    SnapshotDone(NodeId, bool),
    /// The state machine's payload for an `InstallSnapshot` message is ready (or failed).
    SnapshotPrepared(Message, Result<(u64, Vec<u8>), String>),
    /// The WAL append with this ticket, and every one queued before it, is durable (or the
    /// WAL failed).
    Durable(Result<u64, String>),
}

/// A Ready's write queued to the WAL and not yet durable, with what waits for it.
struct InFlight {
    queued: Queued,
    persisted_messages: Vec<Message>,
}

/// Capacity of the loop's inbox, in events.
const INBOX: usize = 8192;

struct Round {
    reads: Vec<(usize, u64)>,
    started: u64,
}

struct Core {
    stop: super::StopHandle,
    tick: Duration,
    raw: RawNode<MemStorage>,
    store: LogStore,
    transport: Transport,
    inbox: Inbox<Ev>,
    apply: crate::hop::Tx<LogEvent>,
    answers: Vec<Inbox<Vec<ReadAnswer>>>,
    status: Arc<super::LogStatus>,
    source: Option<Arc<dyn SnapshotSource>>,
    snapshot_count: u64,
    catch_up: u64,
    max_apply_lag: u64,
    election_ticks: u64,
    props: Vec<Vec<u8>>,
    reads: Vec<(usize, u64)>,
    refused: Vec<LogEvent>,
    rounds: BTreeMap<u64, Round>,
    next_round: u64,
    ticks: u64,
    delivered: u64,
    snap_inflight: BTreeSet<NodeId>,
    /// Readies whose write is queued and not yet durable, oldest first (writes complete in
    /// this order). A Ready with nothing to write waits here too if its persisted messages
    /// depend on an earlier write.
    in_flight: VecDeque<InFlight>,
    /// A WAL failure reported by a waiter task: fatal for the loop (D2).
    wal_failed: Option<String>,
}

/// Runs a wired log core (see [`LogCore::run`]).
pub async fn run(lc: LogCore) -> Result<(), NodeError> {
    let cfg = lc.cfg;
    let listen = *cfg
        .peers
        .get(&cfg.id)
        .ok_or_else(|| NodeError::Config(format!("member {} has no peer address", cfg.id)))?;
    let opened = LogStore::open(&cfg, lc.applied).await?;
    let mut rc = Config::new(cfg.id);
    rc.election_tick = cfg.election_ticks;
    rc.heartbeat_tick = cfg.heartbeat_ticks;
    rc.seed = cfg.seed;
    rc.applied = opened.applied;
    let raw = RawNode::new(&rc, opened.store.mem())
        .map_err(|e| NodeError::Config(format!("raft: {e:?}")))?;
    let inbox = Inbox::new(INBOX);
    let transport = Transport::start(
        cfg.id,
        listen,
        &cfg.peers,
        cfg.peer_book.clone(),
        cfg.peer_queue,
        inbox.clone(),
    )
    .map_err(|e| NodeError::Listen(format!("{listen}: {e}")))?;
    let mut tasks = Vec::new();
    let mut answers = Vec::new();
    for (i, (rx, atx)) in lc.clients.into_iter().enumerate() {
        let ib = inbox.clone();
        tasks.push(glommio::spawn_local(async move {
            let rx = rx.connect().await;
            while let Some(r) = rx.recv().await {
                ib.push(Ev::Client(i, r)).await;
            }
        }));
        let q: Inbox<Vec<ReadAnswer>> = Inbox::new(usize::MAX);
        let qc = q.clone();
        tasks.push(glommio::spawn_local(async move {
            let tx = atx.connect().await;
            loop {
                qc.wait().await;
                for batch in qc.drain() {
                    if tx.send(batch).await.is_err() {
                        return;
                    }
                }
            }
        }));
        answers.push(q);
    }
    let apply = lc.apply_tx.connect().await;
    if let Some(ev) = opened.install {
        apply.send(ev).await.map_err(|_| stopped())?;
    }
    let tick = Duration::from_millis(cfg.tick_ms.max(1));
    let mut core = Core {
        stop: lc.stop,
        tick,
        raw,
        store: opened.store,
        transport,
        inbox,
        apply,
        answers,
        status: lc.status,
        source: lc.source,
        snapshot_count: cfg.snapshot_count,
        catch_up: cfg.catch_up_entries,
        max_apply_lag: cfg.max_apply_lag,
        election_ticks: cfg.election_ticks as u64,
        props: Vec::new(),
        reads: Vec::new(),
        refused: Vec::new(),
        rounds: BTreeMap::new(),
        // Round ids differ across restarts, so a late answer to a round of an earlier
        // incarnation cannot confirm a new round with a stale index.
        next_round: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64 | 1),
        ticks: 0,
        delivered: opened.applied,
        snap_inflight: BTreeSet::new(),
        in_flight: VecDeque::new(),
        wal_failed: None,
    };
    core.status.commit.store(opened.applied, Ordering::Release);
    let r = core.run().await;
    core.fail_all_reads(Refusal::Stopped);
    core.store.wal().close().await;
    let w = core.store.wal().stats();
    tracing::info!(
        groups = w.groups,
        records = w.records,
        bytes = w.bytes,
        "WAL writes since start"
    );
    drop(tasks);
    r
}

fn stopped() -> NodeError {
    NodeError::Config("the apply side went away".into())
}

impl Core {
    async fn run(&mut self) -> Result<(), NodeError> {
        let tick = self.tick;
        let mut next_tick = Instant::now() + tick;
        loop {
            if self.stop.requested() {
                return Ok(());
            }
            let now = Instant::now();
            if now < next_tick {
                let wait = next_tick - now;
                futures_lite::future::or(
                    async {
                        Timer::new(wait).await;
                    },
                    self.inbox.wait(),
                )
                .await;
            }
            let now = Instant::now();
            if now >= next_tick {
                self.raw.tick();
                self.ticks += 1;
                self.expire_rounds();
                // A late executor does not replay missed ticks in a burst.
                next_tick += tick;
                if next_tick <= now {
                    next_tick = now + tick;
                }
            }
            for ev in self.inbox.drain() {
                self.handle(ev);
            }
            if let Some(e) = self.wal_failed.take() {
                return Err(NodeError::Storage(format!("WAL: {e}")));
            }
            self.flush_inputs();
            for ev in std::mem::take(&mut self.refused) {
                self.deliver(ev).await?;
            }
            while self.raw.has_ready() {
                self.handle_ready().await?;
            }
            let durable = self
                .status
                .durable
                .load(Ordering::Acquire)
                .min(self.delivered);
            self.store
                .maybe_compact(durable, self.snapshot_count, self.catch_up)
                .await?;
        }
    }

    /// Hands `ev` to the apply side, waiting while its channel is full (back-pressure), but
    /// giving up when a stop is requested meanwhile: what was not delivered is in the WAL and
    /// a restart re-delivers it.
    async fn deliver(&mut self, ev: LogEvent) -> Result<(), NodeError> {
        if self.stop.requested() {
            return Ok(());
        }
        let (apply, stop, tick) = (&self.apply, &self.stop, self.tick);
        futures_lite::future::or(
            async { apply.send(ev).await.map_err(|_| stopped()) },
            async {
                while !stop.requested() {
                    Timer::new(tick).await;
                }
                Ok(())
            },
        )
        .await
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Client(_, Request::Propose(d)) => {
                crate::stages::mark(crate::stages::Stage::LogReceived);
                self.props.push(d)
            }
            Ev::Client(i, Request::ReadIndex(ctx)) => self.reads.push((i, ctx)),
            Ev::Client(_, Request::ConfChange(cc)) => {
                if let Err(e) = self.raw.propose_conf_change(cc) {
                    let reason = self.refusal(e);
                    self.refused.push(LogEvent::Dropped {
                        proposals: Vec::new(),
                        conf_change: Some(cc),
                        reason,
                    });
                }
            }
            Ev::Client(_, Request::TransferLeader(t)) => {
                if let Err(e) = self.raw.transfer_leader(t) {
                    tracing::info!("transfer to {t} refused: {e:?}");
                }
            }
            Ev::Peer(m) => {
                if let Err(e) = self.raw.step(m) {
                    tracing::debug!("peer message refused: {e:?}");
                }
            }
            Ev::Unreachable(id) => self.raw.report_unreachable(id),
            Ev::SnapshotDone(id, ok) => {
                self.snap_inflight.remove(&id);
                self.raw.report_snapshot(id, ok);
            }
            Ev::SnapshotPrepared(m, r) => self.finish_snapshot(m, r),
            Ev::Durable(Ok(ticket)) => self.durable_through(ticket),
            Ev::Durable(Err(e)) => self.wal_failed = Some(e),
        }
    }

    /// Every queued write up to `ticket` is durable: make their entries and hard state visible
    /// to the Raft core, report them, and send what waited for them, oldest first.
    fn durable_through(&mut self, ticket: u64) {
        while let Some(f) = self.in_flight.front() {
            if f.queued.ticket.is_some_and(|t| t > ticket) {
                break;
            }
            let f = self.in_flight.pop_front().expect("front");
            self.written(f);
        }
    }

    fn written(&mut self, f: InFlight) {
        let last = f.queued.last();
        self.store.written(f.queued);
        if let Some((index, term)) = last {
            crate::stages::mark(crate::stages::Stage::WalDurable);
            self.raw.on_persisted(index, term);
        }
        self.send_all(f.persisted_messages);
    }

    /// Queues a Ready's write (already handed to the WAL as `queued`) behind the writes in
    /// flight; a waiter task reports its durability through the inbox.
    fn track(&mut self, queued: Queued, persisted_messages: Vec<Message>) {
        let f = InFlight {
            queued,
            persisted_messages,
        };
        match f.queued.ticket {
            // Nothing of its own to write and nothing before it: its messages may go now.
            None if self.in_flight.is_empty() => self.written(f),
            None => self.in_flight.push_back(f),
            Some(ticket) => {
                let (wal, inbox) = (self.store.wal().clone(), self.inbox.clone());
                glommio::spawn_local(async move {
                    let r = wal.durable(ticket).await.map(|()| ticket);
                    inbox.push_now(Ev::Durable(r.map_err(|e| e.to_string())));
                })
                .detach();
                self.in_flight.push_back(f);
            }
        }
    }

    /// Waits until every write in flight is durable and reports them.
    async fn drain_writes(&mut self) -> Result<(), NodeError> {
        let last = self.in_flight.iter().rev().find_map(|f| f.queued.ticket);
        if let Some(t) = last {
            self.store.wal().durable(t).await?;
        }
        while let Some(f) = self.in_flight.pop_front() {
            self.written(f);
        }
        Ok(())
    }

    fn refusal(&self, e: RaftError) -> Refusal {
        if self.raw.raft().leader_id() == NO_NODE {
            Refusal::NoLeader
        } else {
            Refusal::Dropped(format!("{e:?}"))
        }
    }

    /// One `propose_batch` for every proposal queued, one `read_index` for every read queued.
    fn flush_inputs(&mut self) {
        let max = self.store.max_entry_bytes();
        if self.props.iter().any(|d| d.len() > max) {
            let (big, ok): (Vec<_>, Vec<_>) = std::mem::take(&mut self.props)
                .into_iter()
                .partition(|d| d.len() > max);
            self.props = ok;
            self.refused.push(LogEvent::Dropped {
                proposals: big,
                conf_change: None,
                reason: Refusal::Dropped(format!("entry larger than {max} bytes")),
            });
        }
        if !self.props.is_empty() {
            let props = std::mem::take(&mut self.props);
            let lag = self
                .delivered
                .saturating_sub(self.status.applied.load(Ordering::Acquire));
            let r = if lag > self.max_apply_lag {
                Err(Refusal::TooManyRequests) // §3 back-pressure
            } else {
                let entries = props
                    .iter()
                    .map(|d| Entry {
                        kind: EntryKind::Normal,
                        data: d.clone(),
                        ..Entry::default()
                    })
                    .collect();
                self.raw.propose_batch(entries).map_err(|e| self.refusal(e))
            };
            if let Err(reason) = r {
                self.refused.push(LogEvent::Dropped {
                    proposals: props,
                    conf_change: None,
                    reason,
                });
            }
        }
        if !self.reads.is_empty() {
            let reads = std::mem::take(&mut self.reads);
            let round = self.next_round;
            self.next_round = self.next_round.wrapping_add(1);
            match self.raw.read_index(round.to_le_bytes().to_vec()) {
                Ok(()) => {
                    let started = self.ticks;
                    self.rounds.insert(round, Round { reads, started });
                }
                Err(e) => {
                    let reason = self.refusal(e);
                    self.answer(reads, Err(reason));
                }
            }
        }
    }

    fn answer(&self, reads: Vec<(usize, u64)>, result: Result<u64, Refusal>) {
        let mut per: BTreeMap<usize, Vec<ReadAnswer>> = BTreeMap::new();
        for (i, ctx) in reads {
            per.entry(i).or_default().push(ReadAnswer {
                ctx,
                result: result.clone(),
            });
        }
        for (i, batch) in per {
            self.answers[i].push_now(batch);
        }
    }

    fn fail_all_reads(&mut self, why: Refusal) {
        let reads: Vec<(usize, u64)> = std::mem::take(&mut self.rounds)
            .into_values()
            .flat_map(|r| r.reads)
            .chain(std::mem::take(&mut self.reads))
            .collect();
        if !reads.is_empty() {
            self.answer(reads, Err(why));
        }
    }

    fn expire_rounds(&mut self) {
        let limit = 2 * self.election_ticks;
        let old: Vec<u64> = self
            .rounds
            .iter()
            .filter(|(_, r)| self.ticks - r.started > limit)
            .map(|(k, _)| *k)
            .collect();
        for k in old {
            let r = self.rounds.remove(&k).expect("listed");
            self.answer(r.reads, Err(Refusal::TimedOut));
        }
    }

    fn read_states(&mut self, states: Vec<ReadState>) {
        for rs in states {
            let Ok(b) = <[u8; 8]>::try_from(rs.context.as_slice()) else {
                continue;
            };
            if let Some(r) = self.rounds.remove(&u64::from_le_bytes(b)) {
                self.answer(r.reads, Ok(rs.index));
            }
        }
    }

    fn send_all(&mut self, msgs: Vec<Message>) {
        for m in msgs {
            if m.kind != MessageKind::InstallSnapshot {
                self.transport.send(m);
                continue;
            }
            let to = m.to;
            let Some(src) = self.source.clone() else {
                tracing::warn!("member {to} needs a snapshot and no snapshot source is set");
                self.raw.report_snapshot(to, false);
                continue;
            };
            if !self.snap_inflight.insert(to) {
                continue; // one at a time per peer; its outcome is reported when done
            }
            let inbox = self.inbox.clone();
            glommio::spawn_local(async move {
                let r = glommio::executor()
                    .spawn_blocking(move || src.snapshot())
                    .await;
                inbox.push_now(Ev::SnapshotPrepared(m, r));
            })
            .detach();
        }
    }

    /// Fills an `InstallSnapshot` with the state machine's payload at its applied index `a`,
    /// described by the log's term and membership at `a`.
    fn finish_snapshot(&mut self, mut m: Message, r: Result<(u64, Vec<u8>), String>) {
        let floor = m.snapshot.as_ref().map_or(0, |s| s.meta.index);
        let mem = self.store.mem();
        let filled = r.and_then(|(a, data)| {
            if a < floor {
                return Err(format!("snapshot source at {a}, behind the log's {floor}"));
            }
            let term = keel_raft::consensus::Storage::term(&mem, a)
                .map_err(|e| format!("term of {a}: {e}"))?;
            Ok(Snapshot {
                meta: SnapshotMeta {
                    index: a,
                    term,
                    conf_state: self.store.conf_at(a),
                },
                data,
            })
        });
        match filled {
            Ok(s) => {
                m.snapshot = Some(s);
                self.transport.send(m);
            }
            Err(e) => {
                tracing::warn!("snapshot for member {} failed: {e}", m.to);
                self.snap_inflight.remove(&m.to);
                self.raw.report_snapshot(m.to, false);
            }
        }
    }

    /// Hands committed entries (the next ones in log order) to the apply side.
    async fn deliver_committed(&mut self, entries: Vec<Entry>) -> Result<(), NodeError> {
        let Some(last) = entries.last() else {
            return Ok(());
        };
        debug_assert_eq!(entries[0].index, self.delivered + 1, "apply order");
        // Only entries in this member's WAL are applied: the store's durable applied index
        // must never pass the log a restart replays from.
        debug_assert!(
            last.index <= self.raw.raft().persisted(),
            "entry {} applied before this member persisted it",
            last.index
        );
        self.delivered = last.index;
        self.status.commit.store(last.index, Ordering::Release);
        crate::stages::mark(crate::stages::Stage::Delivered);
        self.deliver(LogEvent::Committed(entries)).await
    }

    async fn handle_ready(&mut self) -> Result<(), NodeError> {
        let mut rd: Ready = self.raw.ready();
        let now = std::mem::take(&mut rd.messages);
        let after = std::mem::take(&mut rd.persisted_messages);
        if let Some(ss) = rd.soft_state {
            let old = self.status.leader.swap(ss.leader_id, Ordering::AcqRel);
            self.status.set_role(ss.role);
            if old != ss.leader_id {
                self.fail_all_reads(Refusal::LeaderChanged);
            }
        }
        self.status
            .term
            .store(self.raw.raft().term(), Ordering::Release);
        self.send_all(now);
        if rd.snapshot.is_some() {
            return self.handle_snapshot_ready(rd, after).await;
        }
        // Durable before acknowledged: a leader counts its own entries only once they are
        // durable (`on_persisted`), a follower answers only through `persisted_messages`, sent
        // when this write is durable (S5, R1).
        if !rd.entries.is_empty() {
            crate::stages::mark(crate::stages::Stage::WalStart);
        }
        let queued = self
            .store
            .queue(std::mem::take(&mut rd.entries), rd.hard_state, false)?;
        let committed = std::mem::take(&mut rd.committed_entries);
        self.conf_changes(&committed)?;
        // `advance_handed` needs only the last committed entry (everything up to it is handed
        // to the application).
        rd.committed_entries = committed.last().cloned().into_iter().collect();
        self.raw.advance_handed(&rd);
        self.track(queued, after);
        self.read_states(std::mem::take(&mut rd.read_states));
        self.deliver_committed(committed).await
    }

    /// Applies the membership changes among `committed` to the Raft core.
    fn conf_changes(&mut self, committed: &[Entry]) -> Result<(), NodeError> {
        for e in committed {
            if e.kind == EntryKind::ConfChange {
                // D1: log data is checked before use.
                let cc = ConfChange::decode(&e.data).map_err(|err| {
                    NodeError::Storage(format!("membership entry {}: {err}", e.index))
                })?;
                let cs = self.raw.apply_conf_change(&cc);
                self.store.record_conf(e.index, cs);
            }
        }
        Ok(())
    }

    /// A Ready carrying a snapshot from the leader: every earlier write first, then the
    /// snapshot, entries and hard state in place, then the install and the entries after it.
    async fn handle_snapshot_ready(
        &mut self,
        mut rd: Ready,
        after: Vec<Message>,
    ) -> Result<(), NodeError> {
        self.drain_writes().await?;
        let install = self.store.persist(&rd).await?;
        self.send_all(after);
        let committed = std::mem::take(&mut rd.committed_entries);
        self.conf_changes(&committed)?;
        rd.committed_entries = committed.last().cloned().into_iter().collect();
        self.raw.advance(&rd);
        let Ready { read_states, .. } = rd;
        if let Some(ev) = install {
            if let LogEvent::InstallSnapshot { index, .. } = &ev {
                self.delivered = *index;
                self.status.commit.store(*index, Ordering::Release);
            }
            self.deliver(ev).await?;
        }
        self.deliver_committed(committed).await?;
        self.read_states(read_states);
        Ok(())
    }
}
