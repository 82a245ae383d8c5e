//! Server configuration: etcd's flag names (so etcd operators feel at home), the same settings
//! from `KEEL_*` environment variables, and the derived values (member and cluster ids, the
//! role-to-core map). Parsing only: nothing here opens a file or a socket.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Command-line flags and `KEEL_*` environment variables (flags win). Names follow etcd's.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "keel",
    version,
    about = "keel: an etcd-compatible metadata store, thread-per-core"
)]
pub struct Flags {
    /// Human-readable name for this member.
    #[arg(long, env = "KEEL_NAME", default_value = "default")]
    pub name: String,
    /// Path to the data directory (default: `<name>.keel`).
    #[arg(long = "data-dir", env = "KEEL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Path to a dedicated WAL directory, e.g. on its own device (default:
    /// `<data-dir>/member/wal`). Give the same one at every start: the member keeps its Raft
    /// log there.
    #[arg(long = "wal-dir", env = "KEEL_WAL_DIR")]
    pub wal_dir: Option<PathBuf>,
    /// Comma-separated URLs to listen on for client traffic (keel's binary protocol).
    #[arg(
        long = "listen-client-urls",
        env = "KEEL_LISTEN_CLIENT_URLS",
        default_value = "http://127.0.0.1:2379"
    )]
    pub listen_client_urls: String,
    /// Client URLs advertised to the cluster (default: the listen URLs).
    #[arg(long = "advertise-client-urls", env = "KEEL_ADVERTISE_CLIENT_URLS")]
    pub advertise_client_urls: Option<String>,
    /// Comma-separated URLs to listen on for peer traffic.
    #[arg(
        long = "listen-peer-urls",
        env = "KEEL_LISTEN_PEER_URLS",
        default_value = "http://127.0.0.1:2380"
    )]
    pub listen_peer_urls: String,
    /// This member's peer URLs, advertised to the rest of the cluster (default: the listen URLs).
    #[arg(
        long = "initial-advertise-peer-urls",
        env = "KEEL_INITIAL_ADVERTISE_PEER_URLS"
    )]
    pub initial_advertise_peer_urls: Option<String>,
    /// Initial cluster configuration: `name=peer-url,...` (default: this member alone).
    #[arg(long = "initial-cluster", env = "KEEL_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,
    /// `new` for a new cluster, `existing` to join one (after `member add`).
    #[arg(
        long = "initial-cluster-state",
        env = "KEEL_INITIAL_CLUSTER_STATE",
        default_value = "new"
    )]
    pub initial_cluster_state: String,
    /// Initial cluster token: clusters with different tokens get different ids.
    #[arg(
        long = "initial-cluster-token",
        env = "KEEL_INITIAL_CLUSTER_TOKEN",
        default_value = "etcd-cluster"
    )]
    pub initial_cluster_token: String,
    /// Time (in milliseconds) of a heartbeat interval (one Raft tick).
    #[arg(
        long = "heartbeat-interval",
        env = "KEEL_HEARTBEAT_INTERVAL",
        default_value_t = 100
    )]
    pub heartbeat_interval: u64,
    /// Time (in milliseconds) for an election to timeout.
    #[arg(
        long = "election-timeout",
        env = "KEEL_ELECTION_TIMEOUT",
        default_value_t = 1000
    )]
    pub election_timeout: u64,
    /// Number of committed entries that triggers a snapshot and log compaction.
    #[arg(
        long = "snapshot-count",
        env = "KEEL_SNAPSHOT_COUNT",
        default_value_t = 100_000
    )]
    pub snapshot_count: u64,
    /// Raise an alarm when the backend size exceeds this (0: the default, 2 GiB).
    #[arg(
        long = "quota-backend-bytes",
        env = "KEEL_QUOTA_BACKEND_BYTES",
        default_value_t = 0
    )]
    pub quota_backend_bytes: u64,
    /// Auto-compaction mode: `periodic` or `revision`.
    #[arg(
        long = "auto-compaction-mode",
        env = "KEEL_AUTO_COMPACTION_MODE",
        default_value = "periodic"
    )]
    pub auto_compaction_mode: String,
    /// Auto-compaction retention: for periodic a duration (`1h`, `30m`; a bare number is
    /// hours), for revision a count. `0` disables auto-compaction.
    #[arg(
        long = "auto-compaction-retention",
        env = "KEEL_AUTO_COMPACTION_RETENTION",
        default_value = "0"
    )]
    pub auto_compaction_retention: String,
    /// Entries kept behind a log compaction for slow followers; one further behind gets a
    /// snapshot (etcd 3.5's --experimental-snapshot-catchup-entries).
    #[arg(
        long = "experimental-snapshot-catchup-entries",
        env = "KEEL_SNAPSHOT_CATCHUP_ENTRIES",
        default_value_t = 5000
    )]
    pub snapshot_catchup_entries: u64,
    /// How often the leader compares every member's HashKV (etcd's
    /// --experimental-corrupt-check-time): `0` turns it off; `30s`, `5m`, `1h` (a bare number is
    /// seconds). A mismatch raises the CORRUPT alarm.
    #[arg(
        long = "experimental-corrupt-check-time",
        env = "KEEL_CORRUPT_CHECK_TIME",
        default_value = "0"
    )]
    pub corrupt_check_time: String,
    /// Applied entries the apply core may keep out of the published read view (answered, in the
    /// WAL, visible to any read that starts later: reads wait for a publish) so several batches
    /// share one B+tree visible commit; `0` publishes every batch (ARCHITECTURE.md, "Parked
    /// batches").
    #[arg(
        long = "experimental-park-entries",
        env = "KEEL_PARK_ENTRIES",
        default_value_t = 256
    )]
    pub park_entries: u64,
    /// For how long after a read asked for a publish every batch is published as it applies,
    /// in milliseconds (reads then need no publish round trip of their own).
    #[arg(
        long = "experimental-park-after-read-ms",
        env = "KEEL_PARK_AFTER_READ_MS",
        default_value_t = 50
    )]
    pub park_after_read_ms: u64,
    /// Let the WAL write a second commit group while the first one's write is in flight
    /// (`false`: each group only after the previous one is durable). tuning.md, "WAL
    /// durability", "Two groups in flight".
    #[arg(
        long = "experimental-wal-overlap",
        env = "KEEL_WAL_OVERLAP",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub wal_overlap: bool,
    /// Maximum client request size in bytes.
    #[arg(
        long = "max-request-bytes",
        env = "KEEL_MAX_REQUEST_BYTES",
        default_value_t = 1_572_864
    )]
    pub max_request_bytes: u32,
    /// Maximum number of operations per txn.
    #[arg(long = "max-txn-ops", env = "KEEL_MAX_TXN_OPS", default_value_t = 128)]
    pub max_txn_ops: usize,
    /// Role-to-core map: `auto`, or e.g. `log=0,apply=1,client=2-7` (tuning.md).
    #[arg(long, env = "KEEL_CORES", default_value = "auto")]
    pub cores: String,
    /// Microseconds an idle executor keeps polling before it parks (0: park at once). Parking
    /// costs a membarrier (IPIs to every core running keel) and the next message an eventfd
    /// wakeup; a short spin avoids both under steady load at the price of idle CPU (tuning.md).
    #[arg(
        long = "spin-before-park-us",
        env = "KEEL_SPIN_BEFORE_PARK_US",
        default_value_t = 0
    )]
    pub spin_before_park_us: u64,
    /// One executor (thread) per role even where roles share a core: the layout before roles
    /// on one core shared its executor. For measurements (tuning.md).
    #[arg(
        long = "executor-per-role",
        env = "KEEL_EXECUTOR_PER_ROLE",
        hide = true
    )]
    pub executor_per_role: bool,
    /// Log filter (tracing's env-filter syntax), e.g. `info` or `keel_server=debug`.
    #[arg(long = "log-level", env = "KEEL_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

/// A configuration error: the message names the flag.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

/// Which cores the executors of each role are pinned to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreMap {
    pub log: usize,
    pub apply: usize,
    pub client: Vec<usize>,
}

impl CoreMap {
    /// The default for the CPUs this process may run on (`cpus`, ascending: its affinity
    /// mask, so `taskset -c 4-7 keel` puts keel on 4-7): everything on the first (one
    /// executor) with one or two CPUs; otherwise log on the first, apply on the second, clients
    /// on the rest (at most 8 client executors). With two cores one executor does more work per
    /// CPU-second than two (no cross-thread hand-offs: tuning.md has the measurements) and
    /// leaves a core to the kernel and others.
    pub fn auto(cpus: &[usize]) -> CoreMap {
        let first = cpus.first().copied().unwrap_or(0);
        match cpus.len() {
            0..=2 => CoreMap {
                log: first,
                apply: first,
                client: vec![first],
            },
            n => CoreMap {
                log: cpus[0],
                apply: cpus[1],
                client: cpus[2..n.min(10)].to_vec(),
            },
        }
    }

    /// Parses `auto` or `log=A,apply=B,client=C-D|C`, every core one of `cpus` (the CPUs this
    /// process may run on).
    pub fn parse(s: &str, cpus: &[usize]) -> Result<CoreMap, ConfigError> {
        if s == "auto" {
            return Ok(CoreMap::auto(cpus));
        }
        let (mut log, mut apply, mut client) = (None, None, Vec::new());
        for part in s.split(',') {
            let Some((role, cores)) = part.split_once('=') else {
                return err(format!("--cores: expected role=cores, got {part:?}"));
            };
            let list = parse_cores(cores)
                .ok_or_else(|| ConfigError(format!("--cores: bad core list {cores:?}")))?;
            if let Some(c) = list.iter().find(|c| !cpus.contains(c)) {
                return err(format!(
                    "--cores: core {c} is not one this process may run on ({})",
                    cpu_list(cpus)
                ));
            }
            match role {
                "log" if list.len() == 1 => log = Some(list[0]),
                "apply" if list.len() == 1 => apply = Some(list[0]),
                "client" => client.extend(list),
                "log" | "apply" => return err(format!("--cores: {role} takes one core")),
                _ => return err(format!("--cores: unknown role {role:?}")),
            }
        }
        match (log, apply, client.is_empty()) {
            (Some(log), Some(apply), false) => Ok(CoreMap { log, apply, client }),
            _ => err("--cores: log, apply and client must all be given"),
        }
    }
}

/// The CPUs this process may run on (its affinity mask: `taskset`, cpusets), ascending; all
/// of `available_parallelism` if the mask cannot be read.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data for which all-zero is a valid (empty) set;
    // sched_getaffinity writes at most `size_of::<cpu_set_t>()` bytes into it, and CPU_ISSET
    // reads it with an index below CPU_SETSIZE.
    let cpus = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
            (0..libc::CPU_SETSIZE as usize)
                .filter(|&c| libc::CPU_ISSET(c, &set))
                .collect()
        } else {
            Vec::new()
        }
    };
    if cpus.is_empty() {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        return (0..n).collect();
    }
    cpus
}

/// `0-3;6` for an error message.
fn cpu_list(cpus: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            cpus[i].to_string()
        } else {
            format!("{}-{}", cpus[i], cpus[j])
        });
        i = j + 1;
    }
    format!("allowed: {}", out.join(";"))
}

/// `3`, `2-7` or `1;4` style lists (`;` because `,` separates roles).
fn parse_cores(s: &str) -> Option<Vec<usize>> {
    let mut out = Vec::new();
    for p in s.split(';') {
        match p.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse().ok()?, b.parse().ok()?);
                if a > b {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(p.parse().ok()?),
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Auto-compaction settings after parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoCompactionSetting {
    Off,
    Periodic(Duration),
    Revision(i64),
}

/// One member of the initial cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialMember {
    pub name: String,
    pub id: u64,
    pub peer_urls: Vec<String>,
    pub peer_addr: SocketAddr,
}

/// The validated configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub name: String,
    pub data_dir: PathBuf,
    /// `--wal-dir`; `None`: `<data-dir>/member/wal`.
    pub wal_dir: Option<PathBuf>,
    pub client_addrs: Vec<SocketAddr>,
    pub advertise_client_urls: Vec<String>,
    pub peer_listen: SocketAddr,
    pub peer_urls: Vec<String>,
    pub initial_cluster: Vec<InitialMember>,
    pub new_cluster: bool,
    pub member_id: u64,
    pub cluster_id: u64,
    /// --initial-cluster-token: member ids are derived from peer URLs and this token, also for
    /// members added at runtime (so a new member started with `--initial-cluster-state
    /// existing` computes the id the cluster gave it).
    pub cluster_token: String,
    pub tick: Duration,
    pub election_ticks: usize,
    pub snapshot_count: u64,
    pub snapshot_catchup_entries: u64,
    pub corrupt_check: Option<Duration>,
    pub park_entries: u64,
    pub park_after_read: Duration,
    pub wal_overlap: bool,
    pub quota_bytes: u64,
    pub auto_compaction: AutoCompactionSetting,
    pub max_request_bytes: u32,
    pub max_txn_ops: usize,
    pub cores: CoreMap,
    /// How long an idle executor spins before parking (`--spin-before-park-us`).
    pub spin_before_park: Option<Duration>,
    /// `--executor-per-role`: do not share an executor between roles on one core.
    pub executor_per_role: bool,
    pub log_level: String,
}

/// Splits a comma-separated URL list.
fn urls(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(String::from)
        .collect()
}

/// `http://host:port` (or `host:port`) → an address. keel speaks its own protocol on these
/// ports; the `http(s)://` prefix is accepted so etcd-style URLs work unchanged.
pub fn url_addr(url: &str) -> Result<SocketAddr, ConfigError> {
    let hostport = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or(url)
        .trim_end_matches('/');
    hostport
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| {
            a.find(SocketAddr::is_ipv4)
                .or_else(|| hostport.to_socket_addrs().ok()?.next())
        })
        .ok_or_else(|| ConfigError(format!("cannot resolve {url:?} to host:port")))
}

/// FNV-1a, 64 bits: a stable hash (the same in every process and version) for ids.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in *p {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A member id from its sorted peer URLs and the cluster token (as etcd derives it, with a
/// different hash); never 0 (0 means "no member" in Raft).
pub fn member_id(peer_urls: &[String], token: &str) -> u64 {
    let mut sorted: Vec<&str> = peer_urls.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    let mut parts: Vec<&[u8]> = sorted.iter().map(|s| s.as_bytes()).collect();
    parts.push(token.as_bytes());
    fnv1a(&parts).max(1)
}

/// The cluster id from the sorted member ids.
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let bytes: Vec<[u8; 8]> = ids.iter().map(|i| i.to_be_bytes()).collect();
    let parts: Vec<&[u8]> = bytes.iter().map(|b| b.as_slice()).collect();
    fnv1a(&parts).max(1)
}

/// `0` → None; `500ms`, `30s`, `5m`, `1h`; a bare number is seconds.
fn parse_duration(flag: &str, v: &str) -> Result<Option<Duration>, ConfigError> {
    if v == "0" || v.is_empty() {
        return Ok(None);
    }
    let bad = || ConfigError(format!("{flag}: bad duration {v:?}"));
    let (num, unit) = match v.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&v[..i], &v[i..]),
        None => (v, "s"),
    };
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "h" => n * 3600.0,
        "m" => n * 60.0,
        "s" => n,
        "ms" => n / 1000.0,
        _ => return Err(bad()),
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(bad());
    }
    Ok(Some(Duration::from_secs_f64(secs)))
}

fn parse_retention(mode: &str, r: &str) -> Result<AutoCompactionSetting, ConfigError> {
    if r == "0" || r.is_empty() {
        return Ok(AutoCompactionSetting::Off);
    }
    match mode {
        "revision" => match r.parse::<i64>() {
            Ok(n) if n > 0 => Ok(AutoCompactionSetting::Revision(n)),
            _ => err(format!(
                "--auto-compaction-retention: bad revision count {r:?}"
            )),
        },
        "periodic" => {
            let bad = || ConfigError(format!("--auto-compaction-retention: bad duration {r:?}"));
            let (num, unit) = match r.find(|c: char| c.is_ascii_alphabetic()) {
                Some(i) => (&r[..i], &r[i..]),
                None => (r, "h"),
            };
            let n: f64 = num.parse().map_err(|_| bad())?;
            let secs = match unit {
                "h" => n * 3600.0,
                "m" => n * 60.0,
                "s" => n,
                "ms" => n / 1000.0,
                _ => return Err(bad()),
            };
            if !(secs > 0.0 && secs.is_finite()) {
                return Err(bad());
            }
            Ok(AutoCompactionSetting::Periodic(Duration::from_secs_f64(
                secs,
            )))
        }
        m => err(format!(
            "--auto-compaction-mode: unknown mode {m:?} (periodic or revision)"
        )),
    }
}

impl Config {
    /// Validates flags into a configuration, for a process that may run on `cpus`
    /// ([`allowed_cpus`]).
    pub fn from_flags(f: &Flags, cpus: &[usize]) -> Result<Config, ConfigError> {
        let client_urls = urls(&f.listen_client_urls);
        if client_urls.is_empty() {
            return err("--listen-client-urls: no URL given");
        }
        let client_addrs = client_urls
            .iter()
            .map(|u| url_addr(u))
            .collect::<Result<Vec<_>, _>>()?;
        let peer_listen_urls = urls(&f.listen_peer_urls);
        let Some(first_peer) = peer_listen_urls.first() else {
            return err("--listen-peer-urls: no URL given");
        };
        let peer_listen = url_addr(first_peer)?;
        let peer_urls = f
            .initial_advertise_peer_urls
            .as_deref()
            .map(urls)
            .unwrap_or_else(|| peer_listen_urls.clone());
        let initial = f
            .initial_cluster
            .clone()
            .unwrap_or_else(|| format!("{}={}", f.name, peer_urls.join(",")));
        let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for part in urls(&initial) {
            let Some((name, url)) = part.split_once('=') else {
                return err(format!(
                    "--initial-cluster: expected name=url, got {part:?}"
                ));
            };
            by_name
                .entry(name.to_string())
                .or_default()
                .push(url.to_string());
        }
        let mut initial_cluster = Vec::new();
        for (name, purls) in by_name {
            let peer_addr = url_addr(&purls[0])?;
            initial_cluster.push(InitialMember {
                id: member_id(&purls, &f.initial_cluster_token),
                name,
                peer_urls: purls,
                peer_addr,
            });
        }
        let me = initial_cluster
            .iter()
            .find(|m| m.name == f.name)
            .ok_or_else(|| {
                ConfigError(format!(
                    "--initial-cluster has no member named {:?} (--name)",
                    f.name
                ))
            })?;
        let mut mine = me.peer_urls.clone();
        let mut adv = peer_urls.clone();
        mine.sort();
        adv.sort();
        if mine != adv {
            return err(format!(
                "--initial-cluster lists {:?} for {:?} but --initial-advertise-peer-urls is {:?}",
                me.peer_urls, f.name, peer_urls
            ));
        }
        let member_id = me.id;
        let ids: Vec<u64> = initial_cluster.iter().map(|m| m.id).collect();
        let new_cluster = match f.initial_cluster_state.as_str() {
            "new" => true,
            "existing" => false,
            s => {
                return err(format!(
                    "--initial-cluster-state: {s:?} is not new or existing"
                ))
            }
        };
        if f.heartbeat_interval == 0 {
            return err("--heartbeat-interval must be > 0");
        }
        if f.election_timeout < 5 * f.heartbeat_interval {
            return err(format!(
                "--election-timeout[{}ms] should be at least 5 times as --heartbeat-interval[{}ms]",
                f.election_timeout, f.heartbeat_interval
            ));
        }
        if f.max_txn_ops == 0 {
            return err("--max-txn-ops must be > 0");
        }
        Ok(Config {
            name: f.name.clone(),
            data_dir: f
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("{}.keel", f.name))),
            wal_dir: f.wal_dir.clone(),
            advertise_client_urls: f
                .advertise_client_urls
                .as_deref()
                .map(urls)
                .unwrap_or(client_urls),
            client_addrs,
            peer_listen,
            peer_urls,
            initial_cluster,
            new_cluster,
            member_id,
            cluster_id: cluster_id(&ids),
            cluster_token: f.initial_cluster_token.clone(),
            tick: Duration::from_millis(f.heartbeat_interval),
            election_ticks: (f.election_timeout / f.heartbeat_interval) as usize,
            snapshot_count: f.snapshot_count.max(1),
            snapshot_catchup_entries: f.snapshot_catchup_entries,
            corrupt_check: parse_duration(
                "--experimental-corrupt-check-time",
                &f.corrupt_check_time,
            )?,
            park_entries: f.park_entries,
            park_after_read: Duration::from_millis(f.park_after_read_ms),
            wal_overlap: f.wal_overlap,
            quota_bytes: if f.quota_backend_bytes == 0 {
                2 << 30
            } else {
                f.quota_backend_bytes
            },
            auto_compaction: parse_retention(
                &f.auto_compaction_mode,
                &f.auto_compaction_retention,
            )?,
            max_request_bytes: f.max_request_bytes,
            max_txn_ops: f.max_txn_ops,
            cores: CoreMap::parse(&f.cores, cpus)?,
            spin_before_park: (f.spin_before_park_us > 0)
                .then(|| Duration::from_micros(f.spin_before_park_us)),
            executor_per_role: f.executor_per_role,
            log_level: f.log_level.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> Flags {
        let mut v = vec!["keel"];
        v.extend_from_slice(args);
        Flags::try_parse_from(v).unwrap()
    }

    #[test]
    fn defaults_are_a_single_member_named_default() {
        let c = Config::from_flags(&flags(&[]), &[0, 1]).unwrap();
        assert_eq!(c.name, "default");
        assert_eq!(c.data_dir, PathBuf::from("default.keel"));
        assert_eq!(c.wal_dir, None);
        let w = Config::from_flags(&flags(&["--wal-dir", "/fast/wal"]), &[0, 1]).unwrap();
        assert_eq!(w.wal_dir, Some(PathBuf::from("/fast/wal")));
        assert!(c.wal_overlap);
        let o = Config::from_flags(&flags(&["--experimental-wal-overlap=false"]), &[0, 1]).unwrap();
        assert!(!o.wal_overlap);
        assert_eq!(
            c.client_addrs,
            vec!["127.0.0.1:2379".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            c.peer_listen,
            "127.0.0.1:2380".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(c.initial_cluster.len(), 1);
        assert_eq!(c.initial_cluster[0].id, c.member_id);
        assert_eq!(c.election_ticks, 10);
        assert_eq!(c.quota_bytes, 2 << 30);
        assert_eq!(c.auto_compaction, AutoCompactionSetting::Off);
        assert_eq!(
            c.cores,
            CoreMap {
                log: 0,
                apply: 0,
                client: vec![0]
            }
        );
    }

    #[test]
    fn a_three_member_cluster_gives_every_member_the_same_ids() {
        let cluster = "a=http://127.0.0.1:12380,b=http://127.0.0.1:22380,c=http://127.0.0.1:32380";
        let cfgs: Vec<Config> = ["a", "b", "c"]
            .iter()
            .zip(["12380", "22380", "32380"])
            .map(|(n, p)| {
                let url = format!("http://127.0.0.1:{p}");
                Config::from_flags(
                    &flags(&[
                        "--name",
                        n,
                        "--initial-cluster",
                        cluster,
                        "--listen-peer-urls",
                        &url,
                        "--initial-advertise-peer-urls",
                        &url,
                    ]),
                    &[0, 1, 2, 3],
                )
                .unwrap()
            })
            .collect();
        let ids: Vec<u64> = cfgs.iter().map(|c| c.member_id).collect();
        assert_eq!(ids.len(), 3);
        assert!(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2]);
        assert!(cfgs.iter().all(|c| c.cluster_id == cfgs[0].cluster_id));
        assert!(cfgs
            .iter()
            .all(|c| c.initial_cluster == cfgs[0].initial_cluster));
    }

    #[test]
    fn bad_flags_are_refused_with_the_flag_named() {
        let e = |args: &[&str]| {
            Config::from_flags(&flags(args), &[0, 1, 2, 3])
                .unwrap_err()
                .0
        };
        assert!(e(&["--initial-cluster", "x=http://127.0.0.1:1"]).contains("--name"));
        assert!(e(&["--election-timeout", "200"]).contains("--election-timeout"));
        assert!(e(&["--initial-cluster-state", "old"]).contains("--initial-cluster-state"));
        assert!(e(&["--cores", "log=0,apply=9,client=1"]).contains("core 9"));
        assert!(e(&[
            "--auto-compaction-mode",
            "revision",
            "--auto-compaction-retention",
            "x"
        ])
        .contains("retention"));
    }

    #[test]
    fn allowed_cpus_is_the_affinity_mask() {
        // /proc/self/status names the same mask as a list, e.g. "0-1" or "4-7,9".
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let list = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap()
            .trim();
        let mut want = Vec::new();
        for part in list.split(',') {
            match part.split_once('-') {
                Some((a, b)) => want.extend(a.parse::<usize>().unwrap()..=b.parse().unwrap()),
                None => want.push(part.parse::<usize>().unwrap()),
            }
        }
        assert_eq!(allowed_cpus(), want);
    }

    #[test]
    fn core_maps_and_retention_parse() {
        let all: Vec<usize> = (0..8).collect();
        assert_eq!(
            CoreMap::parse("log=0,apply=1,client=2-4;7", &all).unwrap(),
            CoreMap {
                log: 0,
                apply: 1,
                client: vec![2, 3, 4, 7]
            }
        );
        assert_eq!(CoreMap::auto(&[0]).client, vec![0]);
        assert_eq!(
            CoreMap::auto(&[0, 1]),
            CoreMap {
                log: 0,
                apply: 0,
                client: vec![0]
            }
        );
        let sixteen: Vec<usize> = (0..16).collect();
        assert_eq!(CoreMap::auto(&sixteen).client, (2..10).collect::<Vec<_>>());
        // A process confined to some CPUs (taskset, cpusets) stays on them.
        assert_eq!(
            CoreMap::auto(&[4, 5, 6, 7]),
            CoreMap {
                log: 4,
                apply: 5,
                client: vec![6, 7]
            }
        );
        assert_eq!(
            CoreMap::parse("auto", &[3, 5]).unwrap(),
            CoreMap {
                log: 3,
                apply: 3,
                client: vec![3]
            }
        );
        assert_eq!(
            CoreMap::parse("log=4,apply=5,client=6-7", &[4, 5, 6, 7]).unwrap(),
            CoreMap {
                log: 4,
                apply: 5,
                client: vec![6, 7]
            }
        );
        let e = CoreMap::parse("log=0,apply=5,client=6", &[4, 5, 6, 8, 9])
            .unwrap_err()
            .0;
        assert!(
            e.contains("core 0") && e.contains("allowed: 4-6;8-9"),
            "{e}"
        );
        assert_eq!(
            parse_retention("periodic", "30m").unwrap(),
            AutoCompactionSetting::Periodic(Duration::from_secs(1800))
        );
        assert_eq!(
            parse_retention("periodic", "2").unwrap(),
            AutoCompactionSetting::Periodic(Duration::from_secs(7200))
        );
        assert_eq!(
            parse_retention("revision", "1000").unwrap(),
            AutoCompactionSetting::Revision(1000)
        );
    }

    #[test]
    fn environment_variables_set_the_same_options() {
        // clap reads the process environment; no other test in this binary reads this name.
        std::env::set_var("KEEL_SNAPSHOT_COUNT", "4242");
        let f = flags(&[]);
        std::env::remove_var("KEEL_SNAPSHOT_COUNT");
        assert_eq!(f.snapshot_count, 4242);
    }
}
