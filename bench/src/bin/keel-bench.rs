//! `keel-bench`: the load generator's command line.
//!
//! Owns flag parsing (etcd's benchmark tool's commands and flags, plus `--target`, `--json`
//! and `--threads`), building the tokio runtime, and printing the reports. The workloads and
//! targets live in the `keel_bench` library.

use std::sync::Arc;

/// jemalloc, as the server uses: with glibc's malloc its arenas' bookkeeping (`_int_malloc`,
/// `_int_free`, `malloc_consolidate`, ...) was ~9% of the load generator's own CPU under put
/// 10/100, CPU that the server and the generator share on a small machine. Both targets (keel
/// and etcd) run with it.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use clap::{Args, Parser, Subcommand};
use keel_bench::etcd::Etcd;
use keel_bench::report::{json_str, Report};
use keel_bench::target::{
    BenchClient, BenchError, ConnectSpec, Consistency, RangeSpec, Target, TargetKind,
};
use keel_bench::workload::{self, Rng, RunSpec, WatchSpec};

/// keel's load generator: etcd's benchmark workloads against etcd (gRPC) or keel.
#[derive(Parser, Debug)]
#[command(name = "keel-bench", version)]
struct Cli {
    /// Endpoints, host:port, comma separated.
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "127.0.0.1:2379"
    )]
    endpoints: Vec<String>,
    /// Total number of connections.
    #[arg(long, global = true, default_value_t = 1)]
    conns: usize,
    /// Total number of clients (client j uses connection j % conns).
    #[arg(long, global = true, default_value_t = 1)]
    clients: usize,
    /// Server to drive: etcd (v3 gRPC, the etcd-client crate) or keel (its native protocol).
    #[arg(long, global = true, default_value = "etcd")]
    target: String,
    /// Print one JSON object instead of the text report.
    #[arg(long, global = true)]
    json: bool,
    /// Tokio worker threads; 0 = one per CPU (Go's default GOMAXPROCS, as etcd's tool runs).
    #[arg(long, global = true, default_value_t = 0)]
    threads: usize,
    /// etcd target: let tonic write every HTTP/2 frame batch itself (one syscall each) instead
    /// of coalescing a connection's writes in a writer task (the default, like etcd's Go tool).
    #[arg(long, global = true)]
    plain_writes: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Benchmark put.
    Put(PutArgs),
    /// Benchmark range: `range <key> [end]`.
    Range(RangeArgs),
    /// Benchmark txn-put (transactions of --txn-ops puts).
    TxnPut(TxnPutArgs),
    /// Benchmark a mixed load of txn-put and txn-range: `txn-mixed [key] [end]`.
    TxnMixed(TxnMixedArgs),
    /// Benchmark watch: watchers on streams, then puts; watch creation and event latency.
    Watch(WatchArgs),
    /// Benchmark watch latency: one watcher per client on one key, puts at --put-rate.
    WatchLatency(WatchLatencyArgs),
    /// Benchmark lease keepalive.
    LeaseKeepalive(LeaseArgs),
}

#[derive(Args, Debug)]
struct PutArgs {
    /// Key size of put request.
    #[arg(long, default_value_t = 8)]
    key_size: usize,
    /// Value size of put request.
    #[arg(long, default_value_t = 8)]
    val_size: usize,
    /// Total number of put requests.
    #[arg(long, default_value_t = 10000)]
    total: u64,
    /// Maximum possible keys.
    #[arg(long, default_value_t = 1)]
    key_space_size: u64,
    /// Use sequential keys.
    #[arg(long)]
    sequential_keys: bool,
    /// Maximum puts per second (0 is no limit).
    #[arg(long, default_value_t = 0)]
    rate: u64,
}

#[derive(Args, Debug)]
struct RangeArgs {
    /// Key to read (or the range's start).
    key: String,
    /// End of the range (exclusive).
    end: Option<String>,
    /// Linearizable (l) or Serializable (s).
    #[arg(long, default_value = "l")]
    consistency: String,
    /// Total number of range requests.
    #[arg(long, default_value_t = 10000)]
    total: u64,
    /// Maximum range requests per second (0 is no limit).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Maximum number of keys returned (0 is no limit).
    #[arg(long, default_value_t = 0)]
    limit: i64,
    /// Only count the keys.
    #[arg(long)]
    count_only: bool,
    /// Return keys without values.
    #[arg(long)]
    keys_only: bool,
}

#[derive(Args, Debug)]
struct TxnPutArgs {
    /// Key size of txn put.
    #[arg(long, default_value_t = 8)]
    key_size: usize,
    /// Value size of txn put.
    #[arg(long, default_value_t = 8)]
    val_size: usize,
    /// Number of puts per txn.
    #[arg(long, default_value_t = 1)]
    txn_ops: u64,
    /// Maximum possible keys.
    #[arg(long, default_value_t = 1)]
    key_space_size: u64,
    /// Total number of txn requests.
    #[arg(long, default_value_t = 10000)]
    total: u64,
    /// Maximum txns per second (0 is no limit).
    #[arg(long, default_value_t = 0)]
    rate: u64,
}

#[derive(Args, Debug)]
struct TxnMixedArgs {
    /// Start of the read range (default: all keys).
    key: Option<String>,
    /// End of the read range (default: all keys from `key`).
    end: Option<String>,
    /// Key size of the writes.
    #[arg(long, default_value_t = 8)]
    key_size: usize,
    /// Value size of the writes.
    #[arg(long, default_value_t = 8)]
    val_size: usize,
    /// Total number of txn requests.
    #[arg(long, default_value_t = 10000)]
    total: u64,
    /// Maximum txns per second (0 is no limit).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Read operation range result limit.
    #[arg(long, default_value_t = 1000)]
    limit: i64,
    /// Maximum possible keys written.
    #[arg(long, default_value_t = 1)]
    key_space_size: u64,
    /// Linearizable (l) or Serializable (s) reads.
    #[arg(long, default_value = "l")]
    consistency: String,
    /// Read/write ops ratio.
    #[arg(long, default_value_t = 1.0)]
    rw_ratio: f64,
}

#[derive(Args, Debug)]
struct WatchArgs {
    /// Total watch streams.
    #[arg(long, default_value_t = 10)]
    streams: usize,
    /// Total watchers per stream.
    #[arg(long, default_value_t = 100)]
    watch_per_stream: usize,
    /// Total number of keys to be watched.
    #[arg(long, default_value_t = 1)]
    watched_key_total: usize,
    /// Number of keys to put per second (0 is no limit).
    #[arg(long, default_value_t = 0)]
    put_rate: u64,
    /// Number of put requests.
    #[arg(long, default_value_t = 1000)]
    put_total: usize,
    /// Key size of watch request.
    #[arg(long, default_value_t = 32)]
    key_size: usize,
    /// Value size of the puts (at least 8: the value carries the send time).
    #[arg(long, default_value_t = 8)]
    val_size: usize,
    /// Put the watched keys in turn instead of at random.
    #[arg(long)]
    sequential_keys: bool,
}

#[derive(Args, Debug)]
struct WatchLatencyArgs {
    /// Total number of put requests.
    #[arg(long, default_value_t = 10000)]
    total: usize,
    /// Number of keys to put per second.
    #[arg(long, default_value_t = 100)]
    put_rate: u64,
    /// Key size of watch response.
    #[arg(long, default_value_t = 32)]
    key_size: usize,
    /// Value size of watch response (at least 8).
    #[arg(long, default_value_t = 32)]
    val_size: usize,
}

#[derive(Args, Debug)]
struct LeaseArgs {
    /// Total number of lease keepalive requests.
    #[arg(long, default_value_t = 10000)]
    total: u64,
    /// Maximum keepalives per second (0 is no limit).
    #[arg(long, default_value_t = 0)]
    rate: u64,
}

fn consistency(s: &str) -> Result<Consistency, BenchError> {
    match s {
        "l" => Ok(Consistency::Linearizable),
        "s" => Ok(Consistency::Serializable),
        other => Err(BenchError(format!(
            "--consistency must be l or s, not {other:?}"
        ))),
    }
}

fn main() {
    let cli = Cli::parse();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if cli.threads > 0 {
        rt.worker_threads(cli.threads);
    }
    let rt = rt
        .enable_all()
        .build()
        .expect("cannot build the tokio runtime");
    let outcome = rt.block_on(async {
        match TargetKind::parse(&cli.target)? {
            TargetKind::Etcd => {
                run(
                    &cli,
                    Etcd {
                        coalesce_writes: !cli.plain_writes,
                    },
                )
                .await
            }
            TargetKind::Keel => run(&cli, keel_bench::keel::Keel).await,
        }
    });
    match outcome {
        Ok(reports) => print(&cli, &reports),
        Err(e) => {
            eprintln!("keel-bench: {e}");
            std::process::exit(1);
        }
    }
}

fn workload_name(cmd: &Cmd) -> &'static str {
    match cmd {
        Cmd::Put(_) => "put",
        Cmd::Range(_) => "range",
        Cmd::TxnPut(_) => "txn-put",
        Cmd::TxnMixed(_) => "txn-mixed",
        Cmd::Watch(_) => "watch",
        Cmd::WatchLatency(_) => "watch-latency",
        Cmd::LeaseKeepalive(_) => "lease-keepalive",
    }
}

fn print(cli: &Cli, reports: &[Report]) {
    if cli.json {
        let eps: Vec<String> = cli.endpoints.iter().map(|e| json_str(e)).collect();
        let reps: Vec<String> = reports.iter().map(Report::to_json).collect();
        println!(
            "{{\"workload\":{},\"target\":{},\"endpoints\":[{}],\"conns\":{},\"clients\":{},\
             \"reports\":[{}]}}",
            json_str(workload_name(&cli.cmd)),
            json_str(&cli.target),
            eps.join(","),
            cli.conns,
            cli.clients,
            reps.join(",")
        );
        return;
    }
    for r in reports {
        if reports.len() > 1 {
            print!(
                "\n{} ({} ok, {} failed):",
                r.name,
                r.rec.count(),
                r.rec.error_count()
            );
        }
        print!("{}", r.to_text());
    }
}

async fn run<T: Target>(cli: &Cli, target: T) -> Result<Vec<Report>, BenchError> {
    let spec = ConnectSpec {
        endpoints: cli.endpoints.clone(),
        conns: cli.conns,
        clients: cli.clients,
    };
    let progress = !cli.json;
    let mut rng = Rng::new(0x6b65_656c_6265_6e63);
    match &cli.cmd {
        Cmd::Put(a) => {
            if a.key_space_size == 0 {
                return Err(BenchError("--key-space-size must be positive".into()));
            }
            let w = workload::Put {
                key_size: a.key_size,
                value: rng.bytes(a.val_size),
                key_space: a.key_space_size,
                sequential: a.sequential_keys,
            };
            let clients = target.connect(&spec).await?;
            let run = RunSpec {
                total: a.total,
                rate: a.rate,
                progress,
            };
            Ok(workload::run(clients, Arc::new(w), &run).await)
        }
        Cmd::Range(a) => {
            let w = workload::Range {
                spec: RangeSpec {
                    key: a.key.clone().into_bytes(),
                    range_end: a.end.clone().unwrap_or_default().into_bytes(),
                    limit: a.limit,
                    consistency: consistency(&a.consistency)?,
                    count_only: a.count_only,
                    keys_only: a.keys_only,
                },
            };
            let clients = target.connect(&spec).await?;
            let run = RunSpec {
                total: a.total,
                rate: a.rate,
                progress,
            };
            Ok(workload::run(clients, Arc::new(w), &run).await)
        }
        Cmd::TxnPut(a) => {
            if a.key_space_size == 0 || a.txn_ops == 0 {
                return Err(BenchError(
                    "--key-space-size and --txn-ops must be positive".into(),
                ));
            }
            let w = workload::TxnPut {
                key_size: a.key_size,
                value: rng.bytes(a.val_size),
                key_space: a.key_space_size,
                ops: a.txn_ops,
            };
            let clients = target.connect(&spec).await?;
            let run = RunSpec {
                total: a.total,
                rate: a.rate,
                progress,
            };
            Ok(workload::run(clients, Arc::new(w), &run).await)
        }
        Cmd::TxnMixed(a) => {
            if a.key_space_size == 0 || a.rw_ratio < 0.0 {
                return Err(BenchError(
                    "--key-space-size must be positive, --rw-ratio >= 0".into(),
                ));
            }
            // Default read: every key ("\0" to "\0", what clientv3's WithPrefix on "" sends).
            let key = a
                .key
                .clone()
                .map(String::into_bytes)
                .unwrap_or_else(|| vec![0]);
            let range_end = a
                .end
                .clone()
                .map(String::into_bytes)
                .unwrap_or_else(|| vec![0]);
            let w = workload::TxnMixed {
                key_size: a.key_size,
                value: rng.bytes(a.val_size),
                key_space: a.key_space_size,
                rw_ratio: a.rw_ratio,
                read: RangeSpec {
                    key,
                    range_end,
                    limit: a.limit,
                    consistency: consistency(&a.consistency)?,
                    count_only: false,
                    keys_only: false,
                },
            };
            let clients = target.connect(&spec).await?;
            let run = RunSpec {
                total: a.total,
                rate: a.rate,
                progress,
            };
            Ok(workload::run(clients, Arc::new(w), &run).await)
        }
        Cmd::Watch(a) => {
            if a.watched_key_total == 0 || a.watch_per_stream == 0 {
                return Err(BenchError(
                    "--watched-key-total and --watch-per-stream must be positive".into(),
                ));
            }
            let keys: Vec<Vec<u8>> = (0..a.watched_key_total)
                .map(|_| rng.bytes(a.key_size.max(1)))
                .collect();
            let n = keys.len() as u64;
            let put_keys = (0..a.put_total as u64)
                .map(|p| if a.sequential_keys { p % n } else { rng.below(n) } as usize)
                .collect();
            let w = WatchSpec {
                streams: a.streams,
                watchers_per_stream: a.watch_per_stream,
                keys,
                put_keys,
                put_rate: a.put_rate,
                val_size: a.val_size.max(8),
                progress,
            };
            watch::<T>(&target, &spec, &w).await
        }
        Cmd::WatchLatency(a) => {
            let w = WatchSpec {
                streams: cli.clients,
                watchers_per_stream: 1,
                keys: vec![rng.bytes(a.key_size.max(1))],
                put_keys: vec![0; a.total],
                put_rate: a.put_rate,
                val_size: a.val_size.max(8),
                progress,
            };
            watch::<T>(&target, &spec, &w).await
        }
        Cmd::LeaseKeepalive(a) => {
            let mut clients = target.connect(&spec).await?;
            let mut leases = Vec::with_capacity(clients.len());
            for c in &mut clients {
                leases.push(c.lease_grant(100).await?);
            }
            let run = RunSpec {
                total: a.total,
                rate: a.rate,
                progress,
            };
            Ok(workload::run(clients, Arc::new(workload::LeaseKeepalive { leases }), &run).await)
        }
    }
}

/// The watch workloads: the watchers use the run's clients; the puts get a connection of
/// their own, as in etcd's tool.
async fn watch<T: Target>(
    target: &T,
    spec: &ConnectSpec,
    w: &WatchSpec,
) -> Result<Vec<Report>, BenchError> {
    let clients = target.connect(spec).await?;
    let put_spec = ConnectSpec {
        endpoints: spec.endpoints.clone(),
        conns: 1,
        clients: 1,
    };
    let putter = target
        .connect(&put_spec)
        .await?
        .pop()
        .expect("connect returned no client");
    workload::run_watch(clients, putter, w).await
}
