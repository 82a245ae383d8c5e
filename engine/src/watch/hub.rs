//! The watch hub: watchers, fan-out, catch-up and per-stream output (see the module comment of
//! `watch` for the invariants).
//!
//! Shape:
//! - Each watcher is **synced** (it has every event up to the hub's revision and gets new ones
//!   from [`WatchHub::notify`]) or **unsynced** (behind: created with a past start revision, or
//!   a victim whose stream had no room; [`WatchHub::sync_unsynced`] catches it up from the store
//!   and moves it to the synced set). Each set has an [`Index`]: a hash map for single-key
//!   watchers and an interval set for ranges, so finding the watchers of a key costs
//!   O(log n + matches), never a scan of all watchers.
//! - Each stream has a sink and an outbox. Control responses (created, canceled, progress) and
//!   the remaining fragments of a revision whose first fragment was sent queue in the outbox
//!   when the sink is full; event responses are only offered when the outbox is empty, and a
//!   watcher whose response finds no room becomes a victim instead of queueing. So a slow
//!   stream never blocks `notify` and its outbox holds at most its unanswered control
//!   responses plus one revision's fragments.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use crate::mvcc::{Event, EventType, KvError, KvRead};
use crate::watch::interval::IntervalSet;
use crate::watch::{StreamId, WatchCreate, WatchError, WatchId, WatchResponse, WatchSink};

/// Tuning of the hub.
#[derive(Clone, Debug)]
pub struct WatchOptions {
    /// The size (approximate encoded bytes of the events) above which a response is split:
    /// between revisions always, inside one revision only into fragments for watchers that
    /// asked for them. etcd uses its --max-request-bytes (1.5 MiB by default).
    pub max_response_bytes: usize,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            max_response_bytes: 3 << 19,
        }
    }
}

/// What a watcher watches.
#[derive(Clone, Debug)]
enum Target {
    Key(Vec<u8>),
    /// `[start, end)`; `None`: unbounded.
    Range(Vec<u8>, Option<Vec<u8>>),
}

impl Target {
    /// etcd's key/range_end convention; `None` for an empty range.
    fn new(key: &[u8], range_end: &[u8]) -> Option<Target> {
        if range_end.is_empty() {
            Some(Target::Key(key.to_vec()))
        } else if range_end == [0] {
            Some(Target::Range(key.to_vec(), None))
        } else if range_end > key {
            Some(Target::Range(key.to_vec(), Some(range_end.to_vec())))
        } else {
            None
        }
    }
}

/// Watchers by key: single keys in a hash map, ranges in an interval set.
#[derive(Default)]
struct Index {
    points: HashMap<Vec<u8>, Vec<u64>>,
    ranges: IntervalSet,
}

impl Index {
    fn add(&mut self, wid: u64, t: &Target) {
        match t {
            Target::Key(k) => self.points.entry(k.clone()).or_default().push(wid),
            Target::Range(s, e) => self.ranges.insert(s.clone(), e.clone(), wid),
        }
    }

    fn remove(&mut self, wid: u64, t: &Target) {
        match t {
            Target::Key(k) => {
                let v = self.points.get_mut(k).expect("indexed watcher");
                let i = v.iter().position(|&x| x == wid).expect("indexed watcher");
                v.swap_remove(i);
                if v.is_empty() {
                    self.points.remove(k);
                }
            }
            Target::Range(s, _) => {
                let found = self.ranges.remove(s, wid);
                assert!(found, "indexed watcher");
            }
        }
    }

    fn each(&self, key: &[u8], mut f: impl FnMut(u64)) {
        if let Some(v) = self.points.get(key) {
            v.iter().for_each(|&w| f(w));
        }
        if self.ranges.len() > 0 {
            self.ranges.stab(key, f);
        }
    }

    fn any(&self, key: &[u8]) -> bool {
        self.points.contains_key(key) || (self.ranges.len() > 0 && self.ranges.any(key))
    }
}

struct Watcher {
    stream: StreamId,
    id: WatchId,
    target: Target,
    prev_kv: bool,
    no_put: bool,
    no_delete: bool,
    fragment: bool,
    progress_notify: bool,
    /// The first revision this watcher has not been offered (W1, W2, W3). For a synced watcher
    /// it may lag behind the hub (it moves only when events are sent), except for a future
    /// start revision, which holds back earlier events.
    next_rev: i64,
    synced: bool,
    /// No events offered since the last progress tick.
    quiet: bool,
}

impl Watcher {
    /// Whether the watcher gets `e` (its position and filters; the key was matched already).
    fn accepts(&self, e: &Event) -> bool {
        e.kv.mod_revision >= self.next_rev
            && match e.kind {
                EventType::Put => !self.no_put,
                EventType::Delete => !self.no_delete,
            }
    }
}

struct Stream<S> {
    sink: S,
    outbox: VecDeque<WatchResponse>,
    watchers: HashMap<WatchId, u64>,
    /// etcd's next automatic watch id.
    next_id: WatchId,
    /// How many of its watchers are unsynced.
    unsynced: usize,
    /// A progress request waits for the stream's watchers to be synced.
    progress_pending: bool,
}

/// One response of a watcher's delivery, with where it starts.
struct Out {
    resp: WatchResponse,
    first_rev: i64,
    /// A later fragment of a revision whose first fragment precedes it.
    continuation: bool,
}

/// Approximate encoded size of an event (protobuf framing included roughly).
fn event_size(e: &Event) -> usize {
    let kv = |k: &crate::mvcc::KeyValue| 48 + k.key.len() + k.value.len();
    8 + kv(&e.kv) + e.prev_kv.as_ref().map_or(0, kv)
}

/// The watch hub (see the module comment). Owned by the apply core; `S` is the server's sink.
pub struct WatchHub<S: WatchSink> {
    /// The revision of the last [`WatchHub::notify`]: synced watchers have every event up to it.
    rev: i64,
    opts: WatchOptions,
    streams: HashMap<StreamId, Stream<S>>,
    next_stream: StreamId,
    watchers: HashMap<u64, Watcher>,
    next_wid: u64,
    synced: Index,
    unsynced: Index,
    unsynced_ids: BTreeSet<u64>,
    /// Streams whose outbox is not empty.
    backlogged: BTreeSet<StreamId>,
    /// Streams with a progress request waiting for their watchers to sync.
    progress_waiting: BTreeSet<StreamId>,
    /// Watchers that asked for progress notifications.
    progress_watchers: BTreeSet<u64>,
}

/// Offers `resp` after whatever the stream's outbox holds (control responses and fragment
/// continuations are never dropped).
fn push_control<S: WatchSink>(
    st: &mut Stream<S>,
    sid: StreamId,
    backlogged: &mut BTreeSet<StreamId>,
    resp: WatchResponse,
) {
    if st.outbox.is_empty() {
        match st.sink.try_send(resp) {
            Ok(()) => return,
            Err(r) => st.outbox.push_back(r),
        }
    } else {
        st.outbox.push_back(resp);
    }
    backlogged.insert(sid);
}

/// Offers a watcher's responses in order. `Err(rev)`: the first revision not delivered (the
/// watcher's new position); nothing from it on was sent (W3, W4).
fn deliver<S: WatchSink>(
    st: &mut Stream<S>,
    sid: StreamId,
    backlogged: &mut BTreeSet<StreamId>,
    outs: Vec<Out>,
) -> Result<(), i64> {
    for o in outs {
        if o.continuation {
            // The revision's first fragment went out: the rest must follow (W4).
            push_control(st, sid, backlogged, o.resp);
            continue;
        }
        if !st.outbox.is_empty() {
            return Err(o.first_rev);
        }
        if st.sink.try_send(o.resp).is_err() {
            return Err(o.first_rev);
        }
    }
    Ok(())
}

/// Cuts a watcher's events (revision order) into responses: several revisions per response up
/// to the size limit, never splitting a revision except into fragments when the watcher asked
/// for them and the revision alone exceeds the limit (W4). Without fragments an oversized
/// revision goes out whole, as etcd 3.4 sends it.
fn package(max: usize, fragment: bool, id: WatchId, header: i64, events: Vec<Event>) -> Vec<Out> {
    let resp = |events: Vec<Event>, frag: bool| WatchResponse {
        header_revision: header,
        watch_id: id,
        fragment: frag,
        events,
        ..WatchResponse::default()
    };
    let mut outs = Vec::new();
    let mut cur: Vec<Event> = Vec::new();
    let mut cur_size = 0;
    let mut cur_first = 0;
    let mut it = events.into_iter().peekable();
    while let Some(first) = it.next() {
        let rev = first.kv.mod_revision;
        let mut group = vec![first];
        while let Some(e) = it.next_if(|e| e.kv.mod_revision == rev) {
            group.push(e);
        }
        let gsize: usize = group.iter().map(event_size).sum();
        if !cur.is_empty() && cur_size + gsize > max {
            outs.push(Out {
                resp: resp(std::mem::take(&mut cur), false),
                first_rev: cur_first,
                continuation: false,
            });
            cur_size = 0;
        }
        if gsize > max && fragment && group.len() > 1 {
            debug_assert!(cur.is_empty());
            let mut frags: Vec<Vec<Event>> = Vec::new();
            let mut fsize = 0;
            for e in group {
                let s = event_size(&e);
                match frags.last_mut() {
                    Some(f) if fsize + s <= max => {
                        f.push(e);
                        fsize += s;
                    }
                    _ => {
                        frags.push(vec![e]);
                        fsize = s;
                    }
                }
            }
            let n = frags.len();
            for (i, f) in frags.into_iter().enumerate() {
                outs.push(Out {
                    resp: resp(f, i + 1 < n),
                    first_rev: rev,
                    continuation: i > 0,
                });
            }
            continue;
        }
        if cur.is_empty() {
            cur_first = rev;
        }
        cur.extend(group);
        cur_size += gsize;
    }
    if !cur.is_empty() {
        outs.push(Out {
            resp: resp(cur, false),
            first_rev: cur_first,
            continuation: false,
        });
    }
    outs
}

impl<S: WatchSink> WatchHub<S> {
    /// A hub for a store whose current revision is `rev` (the read view's
    /// [`KvRead::revision`] when the apply core starts).
    pub fn new(rev: i64, opts: WatchOptions) -> WatchHub<S> {
        WatchHub {
            rev,
            opts,
            streams: HashMap::new(),
            next_stream: 1,
            watchers: HashMap::new(),
            next_wid: 0,
            synced: Index::default(),
            unsynced: Index::default(),
            unsynced_ids: BTreeSet::new(),
            backlogged: BTreeSet::new(),
            progress_waiting: BTreeSet::new(),
            progress_watchers: BTreeSet::new(),
        }
    }

    /// The revision of the last notification: every synced watcher has all events up to it.
    pub fn revision(&self) -> i64 {
        self.rev
    }

    /// Opens a stream whose responses go to `sink`.
    pub fn open_stream(&mut self, sink: S) -> StreamId {
        let sid = self.next_stream;
        self.next_stream += 1;
        self.streams.insert(
            sid,
            Stream {
                sink,
                outbox: VecDeque::new(),
                watchers: HashMap::new(),
                next_id: 0,
                unsynced: 0,
                progress_pending: false,
            },
        );
        sid
    }

    /// The stream's sink (the server may inspect or replace its state).
    pub fn sink_mut(&mut self, stream: StreamId) -> Option<&mut S> {
        self.streams.get_mut(&stream).map(|s| &mut s.sink)
    }

    /// Closes a stream: its watchers go away silently, its queued responses are dropped.
    pub fn close_stream(&mut self, stream: StreamId) {
        let Some(st) = self.streams.get(&stream) else {
            return;
        };
        let wids: Vec<u64> = st.watchers.values().copied().collect();
        for wid in wids {
            self.remove_watcher(wid);
        }
        self.streams.remove(&stream);
        self.backlogged.remove(&stream);
        self.progress_waiting.remove(&stream);
    }

    /// Number of watchers (all streams).
    pub fn watcher_count(&self) -> usize {
        self.watchers.len()
    }

    /// Number of watchers that are behind (waiting for [`WatchHub::sync_unsynced`]).
    pub fn unsynced_count(&self) -> usize {
        self.unsynced_ids.len()
    }

    /// Whether [`WatchHub::sync_unsynced`] has work: watchers behind, or responses queued for a
    /// full sink. The server calls it when a sink gets room, and on a timer (etcd: 100 ms).
    pub fn needs_sync(&self) -> bool {
        !self.unsynced_ids.is_empty() || !self.backlogged.is_empty()
    }

    /// Creates a watcher on `stream` (etcd's WatchCreateRequest). The created response (or, on
    /// error, a created+canceled response with watch id -1 and etcd's reason) is offered to
    /// the stream at once. A past `start_revision` makes the watcher unsynced: its history
    /// comes from [`WatchHub::sync_unsynced`] (a compacted start is answered there, with a
    /// canceled response carrying the compaction revision, as etcd does).
    ///
    /// Panics on an unknown stream (the server passes the ids it was given).
    pub fn create(&mut self, stream: StreamId, req: WatchCreate) -> Result<WatchId, WatchError> {
        let st = self.streams.get_mut(&stream).expect("unknown watch stream");
        let header_revision = self.rev;
        let refuse = |st: &mut Stream<S>, backlogged: &mut BTreeSet<StreamId>, e: WatchError| {
            let resp = WatchResponse {
                header_revision,
                watch_id: -1,
                created: true,
                canceled: true,
                cancel_reason: e.message().to_string(),
                ..WatchResponse::default()
            };
            push_control(st, stream, backlogged, resp);
            Err(e)
        };
        // etcd checks the range first, then the id.
        let Some(target) = Target::new(&req.key, &req.range_end) else {
            return refuse(st, &mut self.backlogged, WatchError::EmptyRange);
        };
        let id = if req.watch_id == 0 {
            while st.watchers.contains_key(&st.next_id) {
                st.next_id += 1;
            }
            st.next_id += 1;
            st.next_id - 1
        } else if st.watchers.contains_key(&req.watch_id) {
            return refuse(st, &mut self.backlogged, WatchError::DuplicateId);
        } else {
            req.watch_id
        };
        // etcd: synced when the start is 0 or in the future.
        let synced = req.start_revision == 0 || req.start_revision > self.rev;
        let next_rev = if synced {
            req.start_revision.max(self.rev + 1)
        } else {
            req.start_revision
        };
        let wid = self.next_wid;
        self.next_wid += 1;
        push_control(
            st,
            stream,
            &mut self.backlogged,
            WatchResponse {
                header_revision,
                watch_id: id,
                created: true,
                ..WatchResponse::default()
            },
        );
        st.watchers.insert(id, wid);
        if synced {
            self.synced.add(wid, &target);
        } else {
            self.unsynced.add(wid, &target);
            self.unsynced_ids.insert(wid);
            st.unsynced += 1;
        }
        if req.progress_notify {
            self.progress_watchers.insert(wid);
        }
        self.watchers.insert(
            wid,
            Watcher {
                stream,
                id,
                target,
                prev_kv: req.prev_kv,
                no_put: req.no_put,
                no_delete: req.no_delete,
                fragment: req.fragment,
                progress_notify: req.progress_notify,
                next_rev,
                synced,
                quiet: true,
            },
        );
        Ok(id)
    }

    /// Cancels watcher `id` of `stream` (etcd's WatchCancelRequest): it gets no more events
    /// and the stream is offered a canceled response. Returns false, offering nothing (as
    /// etcd), when there is no such watcher.
    pub fn cancel(&mut self, stream: StreamId, id: WatchId) -> bool {
        let Some(&wid) = self.streams.get(&stream).and_then(|s| s.watchers.get(&id)) else {
            return false;
        };
        self.remove_watcher(wid);
        let st = self.streams.get_mut(&stream).expect("stream of a watcher");
        push_control(
            st,
            stream,
            &mut self.backlogged,
            WatchResponse {
                header_revision: self.rev,
                watch_id: id,
                canceled: true,
                ..WatchResponse::default()
            },
        );
        self.answer_waiting_progress();
        true
    }

    fn remove_watcher(&mut self, wid: u64) {
        let w = self.watchers.remove(&wid).expect("known watcher");
        let st = self
            .streams
            .get_mut(&w.stream)
            .expect("stream of a watcher");
        st.watchers.remove(&w.id);
        if w.synced {
            self.synced.remove(wid, &w.target);
        } else {
            self.unsynced.remove(wid, &w.target);
            self.unsynced_ids.remove(&wid);
            st.unsynced -= 1;
            if st.unsynced == 0 && st.progress_pending {
                self.progress_waiting.insert(w.stream);
            }
        }
        if w.progress_notify {
            self.progress_watchers.remove(&wid);
        }
    }

    fn make_unsynced(&mut self, wid: u64, next_rev: i64) {
        let w = self.watchers.get_mut(&wid).expect("known watcher");
        debug_assert!(w.synced);
        w.synced = false;
        w.next_rev = next_rev;
        self.synced.remove(wid, &w.target);
        self.unsynced.add(wid, &w.target);
        self.unsynced_ids.insert(wid);
        self.streams.get_mut(&w.stream).expect("stream").unsynced += 1;
    }

    fn make_synced(&mut self, wid: u64) {
        let w = self.watchers.get_mut(&wid).expect("known watcher");
        debug_assert!(!w.synced);
        w.synced = true;
        self.unsynced.remove(wid, &w.target);
        self.synced.add(wid, &w.target);
        self.unsynced_ids.remove(&wid);
        let st = self.streams.get_mut(&w.stream).expect("stream");
        st.unsynced -= 1;
        if st.unsynced == 0 && st.progress_pending {
            self.progress_waiting.insert(w.stream);
        }
    }

    /// Fans out the events of the revisions applied since the last call (`events` in revision
    /// order, as [`crate::mvcc::KvWrite::take_events`] returns them; all above the hub's
    /// revision and at most `rev`), after their commit is visible; `rev` is the store's new
    /// revision. Costs O(matching watchers), plus O(log n) per event for range watchers. Each
    /// synced watcher is offered the events it matches (all of one revision in one response);
    /// a watcher whose stream has no room becomes unsynced at the first revision it missed.
    pub fn notify(&mut self, rev: i64, events: &[Event]) {
        assert!(
            rev >= self.rev,
            "watch notify at revision {rev} after {}",
            self.rev
        );
        let start = self.rev + 1;
        self.rev = rev;
        let mut hits: Vec<(u64, u32)> = Vec::new();
        for (i, e) in events.iter().enumerate() {
            assert!(
                e.kv.mod_revision >= start && e.kv.mod_revision <= rev,
                "event at revision {} outside ({}, {rev}]",
                e.kv.mod_revision,
                start - 1
            );
            self.synced
                .each(&e.kv.key, |wid| hits.push((wid, i as u32)));
        }
        if hits.is_empty() {
            return;
        }
        // Per watcher, its events in revision order (W1).
        hits.sort_unstable();
        let mut victims = Vec::new();
        for group in hits.chunk_by(|a, b| a.0 == b.0) {
            let wid = group[0].0;
            let w = self.watchers.get_mut(&wid).expect("indexed watcher");
            let evs: Vec<Event> = group
                .iter()
                .map(|&(_, i)| &events[i as usize])
                .filter(|e| w.accepts(e))
                .map(|e| Event {
                    kind: e.kind,
                    kv: e.kv.clone(),
                    prev_kv: if w.prev_kv { e.prev_kv.clone() } else { None },
                })
                .collect();
            if evs.is_empty() {
                continue;
            }
            let outs = package(self.opts.max_response_bytes, w.fragment, w.id, rev, evs);
            let st = self.streams.get_mut(&w.stream).expect("stream");
            w.quiet = false;
            match deliver(st, w.stream, &mut self.backlogged, outs) {
                Ok(()) => w.next_rev = w.next_rev.max(rev + 1),
                Err(missed) => victims.push((wid, missed)),
            }
        }
        for (wid, missed) in victims {
            self.make_unsynced(wid, missed);
        }
    }

    /// Retries the queued responses of full sinks, in order.
    pub fn flush(&mut self) {
        let sids: Vec<StreamId> = self.backlogged.iter().copied().collect();
        for sid in sids {
            let st = self.streams.get_mut(&sid).expect("backlogged stream");
            while let Some(r) = st.outbox.pop_front() {
                if let Err(r) = st.sink.try_send(r) {
                    st.outbox.push_front(r);
                    break;
                }
            }
            if st.outbox.is_empty() {
                self.backlogged.remove(&sid);
            }
        }
    }

    /// Catches up unsynced watchers from the store's history (`store` is a read view; any
    /// revision works: the catch-up never goes past the older of it and the hub's revision).
    /// First retries queued responses; then, for every unsynced watcher whose stream has no
    /// queue: a position below the compaction revision cancels it (a canceled response with
    /// `compact_revision`, as etcd sends); the others share one history scan from the lowest
    /// position, reading about `max_records` stored revisions (whole revisions only), and are
    /// offered their events. A watcher that reaches the hub's revision joins the synced set —
    /// the seam is exact: history up to the hub's revision, live events after it (W2, W3).
    /// Synced watchers are not held back by any of this. Returns [`WatchHub::needs_sync`].
    pub fn sync_unsynced(&mut self, store: &KvRead, max_records: usize) -> Result<bool, KvError> {
        self.flush();
        let target = store.revision().min(self.rev);
        let compacted = store.compact_revision();
        let mut chosen: Vec<u64> = Vec::new();
        let mut min_rev = i64::MAX;
        let ids: Vec<u64> = self.unsynced_ids.iter().copied().collect();
        for wid in ids {
            let w = &self.watchers[&wid];
            let st = &self.streams[&w.stream];
            if !st.outbox.is_empty() || !st.sink.has_room() {
                continue;
            }
            if w.next_rev < compacted {
                let (sid, id) = (w.stream, w.id);
                self.remove_watcher(wid);
                let st = self.streams.get_mut(&sid).expect("stream");
                // etcd's compacted watcher response: no header revision, no reason.
                push_control(
                    st,
                    sid,
                    &mut self.backlogged,
                    WatchResponse {
                        watch_id: id,
                        canceled: true,
                        compact_revision: compacted,
                        ..WatchResponse::default()
                    },
                );
                continue;
            }
            if w.next_rev > target {
                if target == self.rev {
                    self.make_synced(wid);
                }
                continue;
            }
            min_rev = min_rev.min(w.next_rev);
            chosen.push(wid);
        }
        if !chosen.is_empty() {
            self.catch_up(store, &chosen, min_rev, target, max_records)?;
        }
        self.answer_waiting_progress();
        Ok(self.needs_sync())
    }

    fn catch_up(
        &mut self,
        store: &KvRead,
        chosen: &[u64],
        min_rev: i64,
        target: i64,
        max_records: usize,
    ) -> Result<(), KvError> {
        let unsynced = &self.unsynced;
        let batch = store.events(min_rev, target, max_records, |k| unsynced.any(k))?;
        let scanned_to = batch.next_rev - 1;
        let chosen_set: HashSet<u64> = chosen.iter().copied().collect();
        let mut hits: Vec<(u64, u32)> = Vec::new();
        for (i, e) in batch.events.iter().enumerate() {
            self.unsynced.each(&e.kv.key, |wid| {
                if chosen_set.contains(&wid) {
                    hits.push((wid, i as u32));
                }
            });
        }
        hits.sort_unstable();
        let mut by_watcher: HashMap<u64, &[(u64, u32)]> = HashMap::new();
        for g in hits.chunk_by(|a, b| a.0 == b.0) {
            by_watcher.insert(g[0].0, g);
        }
        let mut prev_cache: HashMap<u32, Option<crate::mvcc::KeyValue>> = HashMap::new();
        let mut joined = Vec::new();
        for &wid in chosen {
            let w = self.watchers.get_mut(&wid).expect("chosen watcher");
            let mut evs = Vec::new();
            for &(_, i) in by_watcher.get(&wid).copied().unwrap_or(&[]) {
                let e = &batch.events[i as usize];
                if !w.accepts(e) {
                    continue;
                }
                let prev_kv = if w.prev_kv {
                    match prev_cache.get(&i) {
                        Some(p) => p.clone(),
                        None => {
                            let p = store.prev_kv(&e.kv.key, e.kv.mod_revision)?;
                            prev_cache.insert(i, p.clone());
                            p
                        }
                    }
                } else {
                    None
                };
                evs.push(Event {
                    kind: e.kind,
                    kv: e.kv.clone(),
                    prev_kv,
                });
            }
            let result = if evs.is_empty() {
                Ok(())
            } else {
                w.quiet = false;
                let outs = package(
                    self.opts.max_response_bytes,
                    w.fragment,
                    w.id,
                    scanned_to,
                    evs,
                );
                let st = self.streams.get_mut(&w.stream).expect("stream");
                deliver(st, w.stream, &mut self.backlogged, outs)
            };
            match result {
                Ok(()) => {
                    w.next_rev = w.next_rev.max(scanned_to + 1);
                    if scanned_to == self.rev {
                        joined.push(wid);
                    }
                }
                Err(missed) => w.next_rev = missed,
            }
        }
        for wid in joined {
            self.make_synced(wid);
        }
        Ok(())
    }

    fn answer_waiting_progress(&mut self) {
        let sids: Vec<StreamId> = std::mem::take(&mut self.progress_waiting)
            .into_iter()
            .collect();
        for sid in sids {
            let Some(st) = self.streams.get_mut(&sid) else {
                continue;
            };
            if st.unsynced == 0 && st.progress_pending {
                st.progress_pending = false;
                push_control(
                    st,
                    sid,
                    &mut self.backlogged,
                    WatchResponse {
                        header_revision: self.rev,
                        watch_id: -1,
                        ..WatchResponse::default()
                    },
                );
            }
        }
    }

    /// A client's progress request (etcd's WatchProgressRequest): the stream is offered a
    /// response with watch id -1, no events, and the hub's revision in the header — at once
    /// when every watcher of the stream is synced, else as soon as they all are (W6: a
    /// progress response at R comes after every event up to R; etcd 3.4 answers at once,
    /// which can break this, fixed in later etcd releases).
    pub fn progress(&mut self, stream: StreamId) {
        let st = self.streams.get_mut(&stream).expect("unknown watch stream");
        st.progress_pending = true;
        if st.unsynced == 0 {
            self.progress_waiting.insert(stream);
            self.answer_waiting_progress();
        }
    }

    /// The periodic progress notification (etcd sends it every 10 minutes): every watcher that
    /// asked for progress_notify, is synced, has received no events since the previous tick,
    /// and whose stream has nothing queued is offered an empty response at the hub's revision
    /// (W6). Dropped, not queued, when the sink is full. Costs O(progress_notify watchers).
    pub fn progress_tick(&mut self) {
        for &wid in &self.progress_watchers {
            let w = self.watchers.get_mut(&wid).expect("progress watcher");
            let was_quiet = std::mem::replace(&mut w.quiet, true);
            if !was_quiet || !w.synced {
                continue;
            }
            let st = self.streams.get_mut(&w.stream).expect("stream");
            if !st.outbox.is_empty() {
                continue;
            }
            let _ = st.sink.try_send(WatchResponse {
                header_revision: self.rev,
                watch_id: w.id,
                ..WatchResponse::default()
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(rev: i64, key: &str, size: usize) -> Event {
        Event {
            kind: EventType::Put,
            kv: crate::mvcc::KeyValue {
                key: key.into(),
                mod_revision: rev,
                value: vec![0; size],
                ..Default::default()
            },
            prev_kv: None,
        }
    }

    #[test]
    fn package_cuts_at_revisions_and_fragments_only_oversized_revisions() {
        let evs = vec![
            ev(2, "a", 100),
            ev(3, "a", 100),
            ev(3, "b", 100),
            ev(4, "a", 1000),
            ev(4, "b", 1000),
            ev(5, "a", 10),
        ];
        let max = 500;
        let outs = package(max, true, 7, 5, evs.clone());
        let revs: Vec<Vec<i64>> = outs
            .iter()
            .map(|o| o.resp.events.iter().map(|e| e.kv.mod_revision).collect())
            .collect();
        assert_eq!(revs, vec![vec![2, 3, 3], vec![4], vec![4], vec![5]]);
        let frag: Vec<bool> = outs.iter().map(|o| o.resp.fragment).collect();
        assert_eq!(frag, vec![false, true, false, false]);
        let cont: Vec<bool> = outs.iter().map(|o| o.continuation).collect();
        assert_eq!(cont, vec![false, false, true, false]);
        // Without fragments the big revision goes whole.
        let outs = package(max, false, 7, 5, evs);
        let revs: Vec<Vec<i64>> = outs
            .iter()
            .map(|o| o.resp.events.iter().map(|e| e.kv.mod_revision).collect())
            .collect();
        assert_eq!(revs, vec![vec![2, 3, 3], vec![4, 4], vec![5]]);
        assert!(outs.iter().all(|o| !o.resp.fragment));
    }
}
