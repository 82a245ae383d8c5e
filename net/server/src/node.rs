//! Wiring one member (DESIGN.md §2): opens the store, builds the log core's channels, creates
//! the apply ↔ client channels (bounded, SPSC, one pair per client core), and starts one
//! executor per core the role map names, pinned to it: roles that share a core (log and apply
//! with two cores, everything with one) run as tasks of that core's one executor, so a hand-off
//! between them is a queue push, not a cross-thread wake-up (an eventfd write, a membarrier
//! when the other side parks, a context switch). `--executor-per-role` restores one thread per
//! role for comparison. Returns when the log core stops (SIGTERM / SIGINT, or a fatal error),
//! after the apply core made everything applied durable.
//!
//! Data directory layout: `<data-dir>/member/wal/` (the WAL), `<data-dir>/member/snap/`
//! (received Raft snapshots), `<data-dir>/member/db` (the B+tree file), `<data-dir>/member/lock`
//! (an exclusive `flock` held while the member runs: a second process on the same data dir
//! refuses to start instead of writing the same WAL and B+tree). With `--wal-dir` the WAL is
//! there instead (e.g. on a device of its own), locked the same way (`<wal-dir>/lock`); a
//! member whose `member/wal` already holds segments refuses a `--wal-dir` elsewhere rather than
//! start a second log beside it.
//!
//! Ports: glommio binds every listener with SO_REUSEPORT (each client core has its own), so a
//! second process of the same user on the same client or peer port is *not* refused: it would
//! take a share of the connections. A plain-bind check before starting was tried and removed:
//! the listener of a SIGKILLed keel stays open until the kernel tears down its io_uring (seconds
//! under load), and such a check then refused legitimate restarts. Distinct data dirs and ports
//! per member are the operator's to guarantee (the data dir itself is locked).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use crate::hop;
use glommio::{LocalExecutorBuilder, Placement};
use keel_engine::lease::LessorConfig;
use keel_engine::mvcc::{AutoCompaction, KvStore, StoreOptions};

use crate::apply::{self, ApplyConfig, ApplyIo};
use crate::client::{self, ClientConfig, ClientIo};
use crate::config::{AutoCompactionSetting, Config};
use crate::msg::{ToApply, ToClient};
use crate::raftnode::{LogCore, NodeConfig, SnapshotSource, StopHandle};

/// Capacity of each apply ↔ client channel.
const CORE_QUEUE: usize = 8192;
/// io_uring buffer memory per executor (RLIMIT_MEMLOCK is small on many hosts; tuning.md).
const IO_MEMORY: usize = 512 << 10;

/// The store as the source of Raft snapshots: a compacted, durable copy of the latest read view
/// and the applied index recorded inside it (S4).
struct StoreSnapshots {
    store: Arc<KvStore>,
    dir: PathBuf,
}

impl SnapshotSource for StoreSnapshots {
    fn snapshot(&self) -> Result<(u64, Vec<u8>), String> {
        let path = self.dir.join("outgoing.snap.tmp");
        let _ = std::fs::remove_file(&path);
        self.store
            .database()
            .compact_to(&path, keel_engine::btree::Options::default())
            .map_err(|e| e.to_string())?;
        let applied = KvStore::open(&path, StoreOptions::default())
            .and_then(|s| s.applied_index())
            .map_err(|e| e.to_string())?;
        let bytes = std::fs::read(&path).map_err(|e| e.to_string());
        let _ = std::fs::remove_file(&path);
        Ok((applied, bytes?))
    }
}

/// A running member: stop it with [`Node::stop`] (or a signal) and wait with [`Node::join`].
pub struct Node {
    stop: StopHandle,
    threads: Vec<(String, std::thread::JoinHandle<Result<(), String>>)>,
    /// The data dir's lock (and a separate WAL dir's), held until the member is dropped.
    _locks: Vec<std::fs::File>,
}

/// Takes the exclusive lock of a member's directory (`what`: "data dir", "WAL dir"), or says
/// who holds it.
fn lock_dir(dir: &Path, what: &str) -> Result<std::fs::File, String> {
    let path = dir.join("lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("opening {}: {e}", path.display()))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(format!(
            "{what} {} is in use by another keel process (lock {} is held)",
            dir.display(),
            path.display()
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(format!("locking {}: {e}", path.display())),
    }
}

/// Whether `dir` holds WAL segments (the WAL's own listing; a missing directory holds none).
fn has_wal_segments(dir: &Path) -> Result<bool, String> {
    if !dir
        .try_exists()
        .map_err(|e| format!("{}: {e}", dir.display()))?
    {
        return Ok(false);
    }
    keel_raft::wal::list_segments(dir, false)
        .map(|s| !s.is_empty())
        .map_err(|e| e.to_string())
}

/// The member's WAL directory (absolute) and, when it is not under the data dir, its lock.
/// Refuses a `--wal-dir` elsewhere while `<member>/wal` holds segments (the member's log is
/// there, and a new one beside it would lose or fork it), and a WAL directory without
/// segments when the store has applied entries (`applied`): the log is elsewhere, and starting
/// would create an empty one (checked again, after opening, by the log core).
fn wal_dir(
    cfg: &Config,
    member: &Path,
    applied: u64,
) -> Result<(PathBuf, Option<std::fs::File>), String> {
    let default = member.join("wal");
    let dir = match &cfg.wal_dir {
        None => default.clone(),
        Some(d) => std::path::absolute(d).map_err(|e| format!("--wal-dir {}: {e}", d.display()))?,
    };
    let separate = dir != default;
    if separate && has_wal_segments(&default)? {
        return Err(format!(
            "--wal-dir {}: this member's WAL is in {}; move its files there (with keel \
             stopped) or start without --wal-dir",
            dir.display(),
            default.display()
        ));
    }
    if applied > 0 && !has_wal_segments(&dir)? {
        let hint = match cfg.wal_dir {
            None => "was this member started with --wal-dir? Give the same one",
            Some(_) => "is --wal-dir the directory this member's WAL is in?",
        };
        return Err(format!(
            "no WAL in {} but the store in {} has applied index {applied}; {hint}",
            dir.display(),
            member.display()
        ));
    }
    if !separate {
        return Ok((dir, None));
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let lock = lock_dir(&dir, "WAL dir")?;
    Ok((dir, Some(lock)))
}

/// What a role runs: built on its executor's thread (its future need not be `Send`).
type RoleFuture = Pin<Box<dyn Future<Output = Result<(), String>>>>;
type RoleStart = Box<dyn FnOnce() -> RoleFuture + Send>;

/// A role and the core it is pinned to.
struct Role {
    name: String,
    core: usize,
    start: RoleStart,
}

impl Role {
    fn new<G, F>(name: impl Into<String>, core: usize, start: G) -> Role
    where
        G: FnOnce() -> F + Send + 'static,
        F: Future<Output = Result<(), String>> + 'static,
    {
        Role {
            name: name.into(),
            core,
            start: Box::new(move || Box::pin(start()) as RoleFuture),
        }
    }
}

/// Groups roles into executors: one per core (roles in the given order), or one per role.
fn executors(roles: Vec<Role>, per_role: bool) -> Vec<(usize, Vec<Role>)> {
    let mut out: Vec<(usize, Vec<Role>)> = Vec::new();
    for r in roles {
        match out
            .iter_mut()
            .find(|(core, _)| !per_role && *core == r.core)
        {
            Some((_, group)) => group.push(r),
            None => out.push((r.core, vec![r])),
        }
    }
    out
}

/// Starts one executor pinned to `core` (unbound when `core` is not among `allowed`, the
/// process's CPUs) that runs every role of `group` as a task; it ends when all of them have.
/// The first role error is its result.
fn spawn(
    core: usize,
    allowed: &[usize],
    group: Vec<Role>,
    spin: Option<std::time::Duration>,
) -> Result<(String, std::thread::JoinHandle<Result<(), String>>), String> {
    let placement = if allowed.contains(&core) {
        Placement::Fixed(core)
    } else {
        Placement::Unbound
    };
    let name = group
        .iter()
        .map(|r| r.name.as_str())
        .collect::<Vec<_>>()
        .join("+");
    let mut b = LocalExecutorBuilder::new(placement)
        .name(&format!("keel-{name}"))
        .io_memory(IO_MEMORY);
    if let Some(d) = spin {
        b = b.spin_before_park(d);
    }
    let ex = b
        .spawn(move || async move {
            // Every role starts at once: a channel connects once both ends have, and both ends
            // may be on this executor.
            let tasks: Vec<_> = group
                .into_iter()
                .map(|r| {
                    let fut = (r.start)();
                    let role = r.name;
                    glommio::spawn_local(
                        async move { fut.await.map_err(|e| format!("{role}: {e}")) },
                    )
                })
                .collect();
            let mut first = Ok(());
            for t in tasks {
                let r = t.await;
                if first.is_ok() {
                    first = r;
                }
            }
            first
        })
        .map_err(|e| format!("starting executor {name}: {e}"))?;
    let thread = {
        let name = name.clone();
        std::thread::Builder::new()
            .name(format!("{name}-join"))
            .spawn(move || match ex.join() {
                Ok(r) => r,
                Err(e) => Err(format!("executor {name} panicked: {e:?}")),
            })
            .map_err(|e| e.to_string())?
    };
    Ok((name, thread))
}

fn member_dir(cfg: &Config) -> PathBuf {
    cfg.data_dir.join("member")
}

fn open_store(cfg: &Config, dir: &Path) -> Result<Arc<KvStore>, String> {
    let opts = StoreOptions {
        quota_bytes: cfg.quota_bytes,
        max_txn_ops: cfg.max_txn_ops,
        ..StoreOptions::default()
    };
    KvStore::open(dir.join("db"), opts)
        .map(Arc::new)
        .map_err(|e| format!("opening the store in {}: {e}", dir.display()))
}

impl Node {
    /// Starts every executor of a member.
    pub fn start(cfg: Config) -> Result<Node, String> {
        // Absolute: glommio's directory handles do not resolve relative paths.
        let dir = std::path::absolute(member_dir(&cfg))
            .map_err(|e| format!("data dir {}: {e}", cfg.data_dir.display()))?;
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let mut locks = vec![lock_dir(&dir, "data dir")?];
        let store = open_store(&cfg, &dir)?;
        let applied = store.applied_index().map_err(|e| e.to_string())?;
        let (wal_dir, wal_lock) = wal_dir(&cfg, &dir, applied)?;
        locks.extend(wal_lock);
        let peers: BTreeMap<u64, std::net::SocketAddr> = cfg
            .initial_cluster
            .iter()
            .map(|m| (m.id, m.peer_addr))
            .collect();
        let mut ncfg = NodeConfig::new(cfg.member_id, peers, dir.clone());
        ncfg.wal_dir = wal_dir;
        ncfg.tick_ms = cfg.tick.as_millis() as u64;
        ncfg.election_ticks = cfg.election_ticks as u32;
        ncfg.heartbeat_ticks = 1;
        ncfg.snapshot_count = cfg.snapshot_count;
        ncfg.wal.overlap_groups = cfg.wal_overlap;
        ncfg.catch_up_entries = cfg.snapshot_catchup_entries;
        ncfg.seed = cfg.member_id;
        ncfg.join = !cfg.new_cluster;
        let peer_book = ncfg.peer_book.clone();
        peer_book
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .extend(cfg.initial_cluster.iter().map(|m| (m.id, m.peer_addr)));
        let mut b = LogCore::builder(ncfg);
        b.applied(applied);
        b.snapshot_source(Arc::new(StoreSnapshots {
            store: store.clone(),
            dir: dir.clone(),
        }));
        // Roles on one core run on one executor (unless --executor-per-role): their hand-offs
        // use local channels, which wake the receiving task directly (`hop`).
        let same_executor = |a: usize, b: usize| a == b && !cfg.executor_per_role;
        let (log_core, apply_core) = (cfg.cores.log, cfg.cores.apply);
        let apply_port = b.apply_port_with(same_executor(log_core, apply_core));
        let apply_proposer = b.client_port_with(same_executor(log_core, apply_core));
        let client_ports: Vec<_> = cfg
            .cores
            .client
            .iter()
            .map(|&c| b.client_port_with(same_executor(log_core, c)))
            .collect();
        let stop = b.stop_handle();
        let core = b.build();

        let mut to_apply_tx = Vec::new();
        let mut to_apply_rx = Vec::new();
        let mut to_client_tx = Vec::new();
        let mut to_client_rx = Vec::new();
        for &c in &cfg.cores.client {
            let (t, r) = hop::bounded::<ToApply>(CORE_QUEUE, same_executor(c, apply_core));
            to_apply_tx.push(t);
            to_apply_rx.push(r);
            let (t, r) = hop::bounded::<ToClient>(CORE_QUEUE, same_executor(c, apply_core));
            to_client_tx.push(t);
            to_client_rx.push(r);
        }
        let corrupt = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let vis = Arc::new(crate::msg::Visibility::default());
        let mut roles = vec![Role::new("log", cfg.cores.log, move || async move {
            core.run().await.map_err(|e| e.to_string())
        })];
        let apply_cfg = ApplyConfig {
            member_id: cfg.member_id,
            cluster_id: cfg.cluster_id,
            store: store.clone(),
            lessor_cfg: LessorConfig {
                min_ttl_secs: LessorConfig::min_ttl_secs_for(cfg.election_ticks as u64, cfg.tick),
                ..LessorConfig::default()
            },
            auto_compaction: match cfg.auto_compaction {
                AutoCompactionSetting::Off => None,
                AutoCompactionSetting::Periodic(d) => {
                    Some(AutoCompaction::Periodic(d.as_millis() as u64))
                }
                AutoCompactionSetting::Revision(n) => Some(AutoCompaction::Revision(n)),
            },
            max_response_bytes: cfg.max_request_bytes as usize,
            name: cfg.name.clone(),
            client_urls: cfg.advertise_client_urls.clone(),
            initial: cfg
                .initial_cluster
                .iter()
                .map(|m| (m.id, m.name.clone(), m.peer_urls.clone()))
                .collect(),
            peer_book,
            corrupt_check: cfg.corrupt_check,
            corrupt: corrupt.clone(),
            vis: vis.clone(),
            park: crate::apply::Park {
                max_entries: cfg.park_entries,
                after_read: cfg.park_after_read,
            },
        };
        roles.push(Role::new("apply", cfg.cores.apply, move || async move {
            // A channel connects once both ends have: start every connect at once, so the
            // order in which executors come up cannot deadlock.
            let log = glommio::spawn_local(apply_port.connect());
            let proposer = glommio::spawn_local(apply_proposer.connect());
            let tos: Vec<_> = to_client_tx
                .into_iter()
                .map(|t| glommio::spawn_local(t.connect()))
                .collect();
            let froms: Vec<_> = to_apply_rx
                .into_iter()
                .map(|r| glommio::spawn_local(r.connect()))
                .collect();
            let (log, proposer) = (log.await, proposer.await);
            let mut to_clients = Vec::new();
            for t in tos {
                to_clients.push(Rc::new(t.await));
            }
            let mut from_clients = Vec::new();
            for r in froms {
                from_clients.push(r.await);
            }
            apply::run(
                apply_cfg,
                ApplyIo {
                    log,
                    proposer,
                    to_clients,
                    from_clients,
                },
            )
            .await
        }));
        for (i, ((port, tx), rx)) in client_ports
            .into_iter()
            .zip(to_apply_tx)
            .zip(to_client_rx)
            .enumerate()
        {
            let ccfg = ClientConfig {
                core: i,
                member_id: cfg.member_id,
                cluster_id: cfg.cluster_id,
                listen: cfg.client_addrs.clone(),
                store: store.clone(),
                max_request_bytes: cfg.max_request_bytes,
                max_txn_ops: cfg.max_txn_ops,
                cluster_token: cfg.cluster_token.clone(),
                corrupt: corrupt.clone(),
                vis: vis.clone(),
                data_dir: dir.clone(),
            };
            roles.push(Role::new(
                format!("client{i}"),
                cfg.cores.client[i],
                move || async move {
                    let log = glommio::spawn_local(port.connect());
                    let to_apply = glommio::spawn_local(tx.connect());
                    let from_apply = glommio::spawn_local(rx.connect());
                    let (log, to_apply, from_apply) = (log.await, to_apply.await, from_apply.await);
                    client::run(
                        ccfg,
                        ClientIo {
                            log,
                            to_apply,
                            from_apply,
                        },
                    )
                    .await
                },
            ));
        }
        let mut threads = Vec::new();
        let allowed = crate::config::allowed_cpus();
        for (core, group) in executors(roles, cfg.executor_per_role) {
            threads.push(spawn(core, &allowed, group, cfg.spin_before_park)?);
        }
        Ok(Node {
            stop,
            threads,
            _locks: locks,
        })
    }

    /// A handle that stops the member (used by the signal thread).
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Waits for every executor; the first error wins.
    pub fn join(self) -> Result<(), String> {
        let mut first = Ok(());
        for (name, t) in self.threads {
            let r = t
                .join()
                .unwrap_or_else(|_| Err(format!("{name} thread panicked")));
            if let Err(e) = r {
                tracing::error!(executor = %name, error = %e, "executor failed");
                if first.is_ok() {
                    first = Err(format!("{name}: {e}"));
                }
            }
        }
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(cores: &[(&str, usize)]) -> Vec<Role> {
        cores
            .iter()
            .map(|&(name, core)| Role::new(name, core, || async { Ok(()) }))
            .collect()
    }

    fn names(groups: &[(usize, Vec<Role>)]) -> Vec<(usize, Vec<String>)> {
        groups
            .iter()
            .map(|(c, g)| (*c, g.iter().map(|r| r.name.clone()).collect()))
            .collect()
    }

    #[test]
    fn roles_on_one_core_share_an_executor() {
        let map = [("log", 0), ("apply", 0), ("client0", 1), ("client1", 0)];
        assert_eq!(
            names(&executors(roles(&map), false)),
            vec![
                (0, vec!["log".into(), "apply".into(), "client1".into()]),
                (1, vec!["client0".into()]),
            ]
        );
        assert_eq!(
            names(&executors(roles(&map), true)),
            vec![
                (0, vec!["log".into()]),
                (0, vec!["apply".into()]),
                (1, vec!["client0".into()]),
                (0, vec!["client1".into()]),
            ]
        );
    }
}
