//! `keelctl`: etcdctl 3.4's command line for keel — the same commands, flags and output layouts
//! (simple, json, table), so scripts written for etcdctl work unchanged. Global flags also come
//! from `KEELCTL_*` environment variables (`KEELCTL_ENDPOINTS`, `KEELCTL_DIAL_TIMEOUT`, …).

mod check;
mod out;
mod progress;
mod txn;
mod watch_i;

use std::io::{BufRead, Read};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use keel_client::proto as p;
use keel_client::{Client, ConnectOptions, Error, SortOrder, SortTarget};

use out::{Format, Printer};

pub const EXIT_ERROR: i32 = 1;
pub const EXIT_BAD_CONNECTION: i32 = 2;
pub const EXIT_INVALID_INPUT: i32 = 3;
pub const EXIT_BAD_FEATURE: i32 = 4;
pub const EXIT_BAD_ARGS: i32 = 128;

/// Prints `Error: msg` to stderr and exits with `code`, as etcdctl does.
pub fn exit_error(code: i32, msg: &str) -> ! {
    eprintln!("Error: {msg}");
    std::process::exit(code)
}

#[derive(Parser, Debug)]
#[command(
    name = "keelctl",
    about = "A simple command line client for keel (etcdctl-compatible)"
)]
struct Cli {
    /// gRPC-style endpoints (comma separated)
    #[arg(
        long,
        global = true,
        env = "KEELCTL_ENDPOINTS",
        default_value = "127.0.0.1:2379",
        value_delimiter = ','
    )]
    endpoints: Vec<String>,
    /// dial timeout for client connections
    #[arg(long, global = true, env = "KEELCTL_DIAL_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    dial_timeout: Duration,
    /// timeout for short running command (excluding dial timeout)
    #[arg(long, global = true, env = "KEELCTL_COMMAND_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    command_timeout: Duration,
    /// keepalive time for client connections (a silent watch stream is probed after it)
    #[arg(long, global = true, env = "KEELCTL_KEEPALIVE_TIME", default_value = "2s", value_parser = parse_duration)]
    keepalive_time: Duration,
    /// keepalive timeout for client connections
    #[arg(long, global = true, env = "KEELCTL_KEEPALIVE_TIMEOUT", default_value = "6s", value_parser = parse_duration)]
    keepalive_timeout: Duration,
    /// set the output format (json, simple, table)
    #[arg(
        short = 'w',
        long = "write-out",
        global = true,
        env = "KEELCTL_WRITE_OUT",
        default_value = "simple"
    )]
    write_out: String,
    /// print byte strings as hex encoded strings
    #[arg(long, global = true, env = "KEELCTL_HEX")]
    hex: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Gets the key or a range of keys
    Get(GetArgs),
    /// Puts the given key into the store
    Put(PutArgs),
    /// Removes the specified key or range of keys [key, range_end)
    Del(DelArgs),
    /// Txn processes all the requests in one transaction
    Txn {
        /// Input from stdin interactively
        #[arg(short = 'i', long)]
        interactive: bool,
    },
    /// Watches events stream on keys or prefixes
    Watch {
        key: Option<String>,
        range_end: Option<String>,
        #[arg(long)]
        prefix: bool,
        #[arg(long, default_value_t = 0)]
        rev: i64,
        #[arg(long)]
        prev_kv: bool,
        #[arg(short = 'i', long)]
        interactive: bool,
    },
    /// Lease related commands
    #[command(subcommand)]
    Lease(LeaseCmd),
    /// Compacts the event history in etcd
    Compaction {
        revision: String,
        #[arg(long)]
        physical: bool,
    },
    /// Defragments the storage of the etcd members with given endpoints
    Defrag {
        /// use all endpoints from the cluster member list
        #[arg(long)]
        cluster: bool,
    },
    /// Membership related commands
    #[command(subcommand)]
    Member(MemberCmd),
    /// Endpoint related commands
    Endpoint(EndpointArgs),
    /// commands for checking properties of the etcd cluster
    #[command(subcommand)]
    Check(CheckCmd),
    /// Manages etcd node snapshots
    #[command(subcommand)]
    Snapshot(SnapshotCmd),
    /// Alarm related commands
    #[command(subcommand)]
    Alarm(AlarmCmd),
    /// Acquires a named lock
    Lock {
        name: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
        #[arg(long, default_value_t = 60)]
        ttl: i64,
    },
    /// Observes and participates in leader election
    Elect {
        name: String,
        proposal: Option<String>,
        #[arg(short = 'l', long)]
        listen: bool,
    },
    /// Transfers leadership to another etcd cluster member.
    MoveLeader { target: String },
    /// Prints the version of keelctl
    Version,
}

#[derive(Args, Debug, Clone)]
pub struct GetArgs {
    pub key: String,
    pub range_end: Option<String>,
    #[arg(long, default_value = "l")]
    pub consistency: String,
    #[arg(long)]
    pub from_key: bool,
    #[arg(long)]
    pub keys_only: bool,
    #[arg(long)]
    pub count_only: bool,
    #[arg(long, default_value_t = 0)]
    pub limit: i64,
    #[arg(long, default_value = "")]
    pub order: String,
    #[arg(long)]
    pub prefix: bool,
    #[arg(long)]
    pub print_value_only: bool,
    #[arg(long, default_value_t = 0)]
    pub rev: i64,
    #[arg(long, default_value = "")]
    pub sort_by: String,
}

#[derive(Args, Debug, Clone)]
pub struct PutArgs {
    pub key: String,
    pub value: Option<String>,
    #[arg(long, default_value = "0")]
    pub lease: String,
    #[arg(long)]
    pub prev_kv: bool,
    #[arg(long)]
    pub ignore_value: bool,
    #[arg(long)]
    pub ignore_lease: bool,
}

#[derive(Args, Debug, Clone)]
pub struct DelArgs {
    pub key: String,
    pub range_end: Option<String>,
    #[arg(long)]
    pub prefix: bool,
    #[arg(long)]
    pub prev_kv: bool,
    #[arg(long)]
    pub from_key: bool,
}

#[derive(Subcommand, Debug)]
enum LeaseCmd {
    /// Creates leases
    Grant { ttl: String },
    /// Revokes leases
    Revoke { id: String },
    /// Get lease information
    Timetolive {
        id: String,
        #[arg(long)]
        keys: bool,
    },
    /// List all active leases
    List,
    /// Keeps leases alive (renew)
    KeepAlive {
        id: String,
        #[arg(long)]
        once: bool,
    },
}

#[derive(Subcommand, Debug)]
enum MemberCmd {
    /// Lists all members in the cluster
    List,
    /// Adds a member into the cluster
    Add {
        name: Vec<String>,
        #[arg(long, default_value = "")]
        peer_urls: String,
        #[arg(long)]
        learner: bool,
    },
    /// Removes a member from the cluster
    Remove { id: Vec<String> },
    /// Updates a member in the cluster
    Update {
        id: Vec<String>,
        #[arg(long, default_value = "")]
        peer_urls: String,
    },
    /// Promotes a non-voting member in the cluster
    Promote { id: Vec<String> },
}

fn member_id_arg(args: &[String]) -> u64 {
    if args.len() != 1 {
        exit_error(EXIT_BAD_ARGS, "member ID is not provided");
    }
    u64::from_str_radix(&args[0], 16).unwrap_or_else(|e| {
        exit_error(
            EXIT_BAD_ARGS,
            &format!("bad member ID arg ({e}), expecting ID in Hex"),
        )
    })
}

#[derive(Args, Debug)]
struct EndpointArgs {
    /// use all endpoints from the cluster member list
    #[arg(long, global = true)]
    cluster: bool,
    #[command(subcommand)]
    cmd: EndpointCmd,
}

#[derive(Subcommand, Debug)]
enum CheckCmd {
    /// Check the performance of the etcd cluster
    Perf {
        /// The performance check's workload model. Accepted workloads: s(small), m(medium), l(large), xl(xLarge)
        #[arg(long, default_value = "s")]
        load: String,
        /// The prefix for writing the performance check's keys.
        #[arg(long, default_value = "/etcdctl-check-perf/")]
        prefix: String,
        /// Compact storage with last revision after test is finished.
        #[arg(long)]
        auto_compact: bool,
        /// Defragment storage after test is finished.
        #[arg(long)]
        auto_defrag: bool,
        /// How long to write (keelctl only; etcdctl always writes for 60s)
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        duration: Duration,
    },
}

#[derive(Subcommand, Debug)]
enum EndpointCmd {
    /// Checks the healthiness of endpoints specified in `--endpoints` flag
    Health,
    /// Prints out the status of endpoints specified in `--endpoints` flag
    Status,
    /// Prints the KV history hash for each endpoint in --endpoints
    Hashkv {
        #[arg(long, default_value_t = 0)]
        rev: i64,
    },
}

#[derive(Subcommand, Debug)]
enum SnapshotCmd {
    /// Stores an etcd node backend snapshot to a given file
    Save { filename: String },
}

#[derive(Subcommand, Debug)]
enum AlarmCmd {
    /// Disarms all alarms
    Disarm,
    /// Lists all alarms
    List,
}

/// Go-style durations: `2s`, `500ms`, `1m30s`, `1.5s`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let mut total = 0f64;
    let mut rest = s.trim();
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("time: missing unit in duration {s:?}"))?;
        let n: f64 = rest[..num_end]
            .parse()
            .map_err(|_| format!("time: invalid duration {s:?}"))?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            u => return Err(format!("time: unknown unit {u:?} in duration {s:?}")),
        };
        total += n * mult;
        rest = &rest[unit_end..];
    }
    Ok(Duration::from_secs_f64(total))
}

fn parse_lease(s: &str, what: &str) -> i64 {
    match i64::from_str_radix(s, 16) {
        Ok(v) => v,
        Err(e) => exit_error(
            EXIT_BAD_ARGS,
            &format!("bad lease ID {what}({e}), expecting ID in Hex"),
        ),
    }
}

/// Builds the range request of `get` (etcdctl's `getGetOp`).
pub fn get_request(a: &GetArgs) -> Result<p::RangeRequest, (i32, String)> {
    let bad = |s: &str| (EXIT_BAD_ARGS, s.to_string());
    let feature = |s: String| (EXIT_BAD_FEATURE, s);
    if a.prefix && a.from_key {
        return Err(bad(
            "`--prefix` and `--from-key` cannot be set at the same time, choose one",
        ));
    }
    let mut r = p::RangeRequest {
        key: a.key.as_bytes().to_vec(),
        ..Default::default()
    };
    match a.consistency.as_str() {
        "s" => r.serializable = true,
        "l" => {}
        c => return Err(feature(format!("unknown consistency flag {c:?}"))),
    }
    if let Some(end) = &a.range_end {
        if a.prefix || a.from_key {
            return Err(bad("too many arguments, only accept one argument when `--prefix` or `--from-key` is set"));
        }
        r.range_end = end.as_bytes().to_vec();
    }
    r.limit = a.limit;
    if a.rev > 0 {
        r.revision = a.rev;
    }
    r.sort_order = match a.order.to_uppercase().as_str() {
        "ASCEND" => SortOrder::Ascend,
        "DESCEND" => SortOrder::Descend,
        "" => SortOrder::None,
        _ => return Err(feature(format!("bad sort order {}", a.order))),
    };
    r.sort_target = match a.sort_by.to_uppercase().as_str() {
        "CREATE" => SortTarget::Create,
        "KEY" | "" => SortTarget::Key,
        "MODIFY" => SortTarget::Mod,
        "VALUE" => SortTarget::Value,
        "VERSION" => SortTarget::Version,
        _ => return Err(feature(format!("bad sort target {}", a.sort_by))),
    };
    // Keys come sorted ascending anyway (etcd's client drops that sort).
    if r.sort_target == SortTarget::Key && r.sort_order == SortOrder::Ascend {
        r.sort_order = SortOrder::None;
    }
    if a.prefix {
        if r.key.is_empty() {
            r.key = vec![0];
            r.range_end = vec![0];
        } else {
            r.range_end = keel_client::prefix_end(&r.key);
        }
    }
    if a.from_key {
        if r.key.is_empty() {
            r.key = vec![0];
        }
        r.range_end = vec![0];
    }
    r.keys_only = a.keys_only;
    r.count_only = a.count_only;
    Ok(r)
}

/// Builds the put request (etcdctl's `getPutOp`); `value` from the argument.
pub fn put_request(a: &PutArgs, stdin_value: Option<String>) -> Result<p::PutRequest, String> {
    if a.ignore_value && a.value.is_some() {
        return Err("put command needs only 1 argument when 'ignore-value' is set".into());
    }
    let value = if a.ignore_value {
        String::new()
    } else {
        match (&a.value, stdin_value) {
            (Some(v), _) => v.clone(),
            (None, Some(v)) => v,
            (None, None) => {
                return Err(
                    "put command needs 1 argument and input from stdin or 2 arguments".into(),
                )
            }
        }
    };
    let lease = i64::from_str_radix(&a.lease, 16)
        .map_err(|e| format!("bad lease ID ({e}), expecting ID in Hex"))?;
    Ok(p::PutRequest {
        key: a.key.as_bytes().to_vec(),
        value: value.into_bytes(),
        lease,
        prev_kv: a.prev_kv,
        ignore_value: a.ignore_value,
        ignore_lease: a.ignore_lease,
    })
}

/// Builds the delete request (etcdctl's `getDelOp`).
pub fn del_request(a: &DelArgs) -> Result<p::DeleteRangeRequest, String> {
    if a.prefix && a.from_key {
        return Err(
            "`--prefix` and `--from-key` cannot be set at the same time, choose one".into(),
        );
    }
    let mut r = p::DeleteRangeRequest {
        key: a.key.as_bytes().to_vec(),
        prev_kv: a.prev_kv,
        ..Default::default()
    };
    if let Some(end) = &a.range_end {
        if a.prefix || a.from_key {
            return Err("too many arguments, only accept one argument when `--prefix` or `--from-key` is set".into());
        }
        r.range_end = end.as_bytes().to_vec();
    }
    if a.prefix {
        if r.key.is_empty() {
            r.key = vec![0];
            r.range_end = vec![0];
        } else {
            r.range_end = keel_client::prefix_end(&r.key);
        }
    }
    if a.from_key {
        if r.key.is_empty() {
            r.key = vec![0];
        }
        r.range_end = vec![0];
    }
    Ok(r)
}

fn fail(e: Error) -> ! {
    exit_error(EXIT_ERROR, &e.to_string())
}

async fn call(client: &Client, req: p::Request) -> p::Response {
    match req {
        p::Request::Range(r) => {
            let mut g = client.get(r.key.clone());
            g = g
                .range_end(r.range_end.clone())
                .rev(r.revision)
                .limit(r.limit)
                .sort(r.sort_target, r.sort_order);
            if r.serializable {
                g = g.serializable();
            }
            if r.keys_only {
                g = g.keys_only();
            }
            if r.count_only {
                g = g.count_only();
            }
            p::Response::Range(g.await.unwrap_or_else(|e| fail(e)))
        }
        p::Request::Put(x) => {
            let mut b = client.put(x.key, x.value).lease(x.lease);
            if x.prev_kv {
                b = b.prev_kv();
            }
            if x.ignore_value {
                b = b.ignore_value();
            }
            if x.ignore_lease {
                b = b.ignore_lease();
            }
            p::Response::Put(b.await.unwrap_or_else(|e| fail(e)))
        }
        p::Request::DeleteRange(d) => {
            let mut b = client.delete(d.key).range_end(d.range_end);
            if d.prev_kv {
                b = b.prev_kv();
            }
            p::Response::DeleteRange(b.await.unwrap_or_else(|e| fail(e)))
        }
        _ => unreachable!("only kv requests go through call"),
    }
}

fn main() {
    let cli = Cli::parse();
    let format = match cli.write_out.as_str() {
        "simple" => Format::Simple,
        "json" => Format::Json,
        "table" => Format::Table,
        other => exit_error(
            EXIT_BAD_FEATURE,
            &format!("unknown output format {other:?}"),
        ),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = rt.block_on(run(cli, format));
    std::process::exit(code);
}

fn connect_options(cli: &Cli) -> ConnectOptions {
    ConnectOptions::default()
        .with_dial_timeout(cli.dial_timeout)
        .with_request_timeout(cli.command_timeout)
        .with_keepalive(cli.keepalive_time, cli.keepalive_timeout)
}

async fn connect(cli: &Cli) -> Client {
    connect_to(cli, cli.endpoints.clone()).await
}

async fn connect_to(cli: &Cli, endpoints: Vec<String>) -> Client {
    match Client::connect(endpoints, connect_options(cli)).await {
        Ok(c) => c,
        // etcdctl 3.4 dials lazily: the failure surfaces from the command itself (exit 1).
        Err(_) => exit_error(EXIT_ERROR, "context deadline exceeded"),
    }
}

/// `--cluster`: a client for every client URL in the member list (etcdctl's
/// `endpointsFromCluster`); without it, `client` itself.
async fn cluster_client(cli: &Cli, client: Client, cluster: bool) -> Client {
    if !cluster {
        return client;
    }
    let members = client.member_list().await.unwrap_or_else(|e| {
        exit_error(
            EXIT_ERROR,
            &format!("failed to fetch endpoints from etcd cluster member list: {e}"),
        )
    });
    let urls: Vec<String> = members
        .members
        .iter()
        .flat_map(|m| m.client_urls.iter().cloned())
        .collect();
    if urls.is_empty() {
        exit_error(
            EXIT_ERROR,
            "failed to fetch endpoints from etcd cluster member list: no client URLs",
        );
    }
    connect_to(cli, urls).await
}

async fn run(cli: Cli, format: Format) -> i32 {
    let mut pr = Printer {
        format,
        hex: cli.hex,
        value_only: false,
        out: std::io::stdout().lock(),
    };
    if let Cmd::Version = cli.cmd {
        println!("keelctl version: {}", env!("CARGO_PKG_VERSION"));
        println!("API version: 3.4");
        return 0;
    }
    if let Cmd::Check(CheckCmd::Perf {
        load,
        prefix,
        auto_compact,
        auto_defrag,
        duration,
    }) = &cli.cmd
    {
        let a = check::PerfArgs {
            load: load.clone(),
            prefix: prefix.clone(),
            auto_compact: *auto_compact,
            auto_defrag: *auto_defrag,
            duration: *duration,
        };
        return check::perf(&cli.endpoints, connect_options(&cli), &a).await;
    }
    let client = connect(&cli).await;
    match &cli.cmd {
        Cmd::Get(a) => {
            let req = get_request(a).unwrap_or_else(|(code, e)| exit_error(code, &e));
            if a.print_value_only {
                if format != Format::Simple {
                    exit_error(
                        EXIT_BAD_ARGS,
                        "print-value-only is only for `--write-out=simple`",
                    );
                }
                pr.value_only = true;
            }
            if let p::Response::Range(r) = call(&client, p::Request::Range(req)).await {
                pr.get(&r, a.count_only);
            }
        }
        Cmd::Put(a) => {
            let stdin_value = if a.value.is_none() && !a.ignore_value {
                let mut s = String::new();
                std::io::stdin().read_to_string(&mut s).ok().map(|_| s)
            } else {
                None
            };
            let req = put_request(a, stdin_value).unwrap_or_else(|e| exit_error(EXIT_BAD_ARGS, &e));
            if let p::Response::Put(r) = call(&client, p::Request::Put(req)).await {
                pr.put(&r);
            }
        }
        Cmd::Del(a) => {
            let req = del_request(a).unwrap_or_else(|e| exit_error(EXIT_BAD_ARGS, &e));
            if let p::Response::DeleteRange(r) = call(&client, p::Request::DeleteRange(req)).await {
                pr.del(&r);
            }
        }
        Cmd::Txn { interactive } => {
            let stdin = std::io::stdin();
            let mut lines = stdin.lock().lines();
            let req = txn::read_txn(&mut lines, *interactive)
                .unwrap_or_else(|e| exit_error(EXIT_INVALID_INPUT, &e));
            let r = keel_client::Txn::from_request(&client, req)
                .await
                .unwrap_or_else(|e| fail(e));
            pr.txn(&r);
        }
        Cmd::Watch {
            key,
            range_end,
            prefix,
            rev,
            prev_kv,
            interactive,
        } => {
            if *interactive {
                watch_i::run(&client, &mut pr).await;
            }
            let Some(key) = key else {
                exit_error(EXIT_BAD_ARGS, "watch in non-interactive mode requires one or two arguments as key or prefix, with range end")
            };
            let mut w = client.watch(key.clone());
            if let Some(end) = range_end {
                w = w.range_end(end.clone());
            }
            if *prefix {
                w = w.prefix();
            }
            if *rev > 0 {
                w = w.rev(*rev);
            }
            if *prev_kv {
                w = w.prev_kv();
            }
            let mut w = w.await.unwrap_or_else(|e| fail(e));
            while let Some(b) = w.next().await {
                match b {
                    Ok(b) => pr.watch(&b),
                    Err(e) => exit_error(EXIT_INTERRUPTED, &e.to_string()),
                }
            }
        }
        Cmd::Lease(l) => match l {
            LeaseCmd::Grant { ttl } => {
                let ttl: i64 = ttl
                    .parse()
                    .unwrap_or_else(|e| exit_error(EXIT_BAD_ARGS, &format!("bad TTL ({e})")));
                let r = client.lease_grant(ttl).await.unwrap_or_else(|e| {
                    exit_error(EXIT_ERROR, &format!("failed to grant lease ({e})"))
                });
                pr.grant(&r);
            }
            LeaseCmd::Revoke { id } => {
                let id = parse_lease(id, "arg ");
                let r = client.lease_revoke(id).await.unwrap_or_else(|e| {
                    exit_error(EXIT_ERROR, &format!("failed to revoke lease ({e})"))
                });
                pr.revoke(id, &r);
            }
            LeaseCmd::Timetolive { id, keys } => {
                let id = parse_lease(id, "arg ");
                let r = client
                    .lease_time_to_live(id, *keys)
                    .await
                    .unwrap_or_else(|e| fail(e));
                pr.time_to_live(&r, *keys);
            }
            LeaseCmd::List => {
                let r = client.lease_leases().await.unwrap_or_else(|e| {
                    exit_error(EXIT_ERROR, &format!("failed to list leases ({e})"))
                });
                pr.leases(&r);
            }
            LeaseCmd::KeepAlive { id, once } => {
                let id = parse_lease(id, "arg ");
                if *once {
                    match client.lease_keep_alive_once(id).await {
                        Ok(r) if r.ttl > 0 => pr.keep_alive(&r),
                        Ok(_) => exit_error(
                            EXIT_BAD_CONNECTION,
                            &Error::Server(p::ErrorResponse::new(p::ErrorCode::LeaseNotFound))
                                .to_string(),
                        ),
                        Err(e) => exit_error(EXIT_BAD_CONNECTION, &e.to_string()),
                    }
                    return 0;
                }
                loop {
                    match client.lease_keep_alive_once(id).await {
                        Ok(r) if r.ttl > 0 => {
                            pr.keep_alive(&r);
                            tokio::time::sleep(Duration::from_millis(
                                (r.ttl as u64 * 1000 / 3).max(100),
                            ))
                            .await;
                        }
                        _ => break,
                    }
                }
                if format == Format::Simple {
                    println!("lease {id:016x} expired or revoked.");
                }
            }
        },
        Cmd::Compaction { revision, physical } => {
            let rev: i64 = revision
                .parse()
                .unwrap_or_else(|e| exit_error(EXIT_ERROR, &format!("{e}")));
            client
                .compact(rev, *physical)
                .await
                .unwrap_or_else(|e| fail(e));
            println!("compacted revision {rev}");
        }
        Cmd::Defrag { cluster } => {
            let client = cluster_client(&cli, client, *cluster).await;
            let mut failed = false;
            let n = client.endpoints().len();
            for (i, ep) in client.endpoints().iter().enumerate() {
                let mut progress = progress::Progress::for_stdout();
                let r = {
                    let call = client.defragment_on(i);
                    tokio::pin!(call);
                    let mut tick = tokio::time::interval(Duration::from_millis(200));
                    loop {
                        tokio::select! {
                            r = &mut call => break r,
                            _ = tick.tick() => {
                                progress.update(|t| progress::defrag_line(ep, i, n, t));
                            }
                        }
                    }
                };
                progress.finish();
                match r {
                    Ok(_) => println!("Finished defragmenting etcd member[{ep}]"),
                    Err(e) => {
                        eprintln!("Failed to defragment etcd member[{ep}] ({e})");
                        failed = true;
                    }
                }
            }
            if failed {
                return EXIT_ERROR;
            }
        }
        Cmd::Member(MemberCmd::List) => {
            let r = client.member_list().await.unwrap_or_else(|e| fail(e));
            pr.member_list(&r);
        }
        Cmd::Member(MemberCmd::Add {
            name,
            peer_urls,
            learner,
        }) => {
            if name.is_empty() {
                exit_error(EXIT_BAD_ARGS, "member name not provided");
            }
            if name.len() > 1 {
                let mut ev = String::from("too many arguments");
                for s in name {
                    if s.to_lowercase().starts_with("http") {
                        ev.push_str(&format!(", did you mean --peer-urls={s}"));
                    }
                }
                exit_error(EXIT_BAD_ARGS, &ev);
            }
            if peer_urls.is_empty() {
                exit_error(EXIT_BAD_ARGS, "member peer urls not provided");
            }
            let urls: Vec<String> = peer_urls.split(',').map(str::to_string).collect();
            let r = client
                .member_add(urls, *learner)
                .await
                .unwrap_or_else(|e| fail(e));
            pr.member_add(&r, &name[0], peer_urls);
        }
        Cmd::Member(MemberCmd::Remove { id }) => {
            let id = member_id_arg(id);
            let r = client.member_remove(id).await.unwrap_or_else(|e| fail(e));
            pr.member_changed("removed from", id, &r.header, &r.members);
        }
        Cmd::Member(MemberCmd::Update { id, peer_urls }) => {
            let id = member_id_arg(id);
            if peer_urls.is_empty() {
                exit_error(EXIT_BAD_ARGS, "member peer urls not provided");
            }
            let urls: Vec<String> = peer_urls.split(',').map(str::to_string).collect();
            let r = client
                .member_update(id, urls)
                .await
                .unwrap_or_else(|e| fail(e));
            pr.member_changed("updated in", id, &r.header, &r.members);
        }
        Cmd::Member(MemberCmd::Promote { id }) => {
            let id = member_id_arg(id);
            let r = client.member_promote(id).await.unwrap_or_else(|e| fail(e));
            pr.member_changed("promoted in", id, &r.header, &r.members);
        }
        Cmd::Endpoint(EndpointArgs { cluster, cmd }) => match cmd {
            EndpointCmd::Status => {
                let client = cluster_client(&cli, client, *cluster).await;
                let mut list = Vec::new();
                let mut failed = false;
                for (i, ep) in client.endpoints().iter().enumerate() {
                    match client.status_on(i).await {
                        Ok(s) => list.push((ep.clone(), s)),
                        Err(e) => {
                            failed = true;
                            eprintln!("Failed to get the status of endpoint {ep} ({e})")
                        }
                    }
                }
                pr.endpoint_status(&list);
                if failed {
                    return EXIT_ERROR;
                }
            }
            EndpointCmd::Health => {
                let client = cluster_client(&cli, client, *cluster).await;
                // All endpoints at once, listed as they answer (as etcdctl does).
                let mut probes = tokio::task::JoinSet::new();
                for (i, ep) in client.endpoints().iter().enumerate() {
                    let (c, ep) = (client.clone(), ep.clone());
                    probes.spawn(async move {
                        let t = std::time::Instant::now();
                        let r = c.health_on(i).await;
                        (ep, r.map(|_| ()), t.elapsed())
                    });
                }
                let mut hs = Vec::new();
                let mut bad = false;
                while let Some(done) = probes.join_next().await {
                    let (ep, r, took) = done.expect("health probe task");
                    let took = out::go_duration(took);
                    match r {
                        Ok(()) => hs.push((ep, true, took, String::new())),
                        Err(e) => {
                            bad = true;
                            hs.push((ep, false, took, e.to_string()))
                        }
                    }
                }
                pr.endpoint_health(&hs);
                if bad {
                    exit_error(EXIT_ERROR, "unhealthy cluster");
                }
            }
            EndpointCmd::Hashkv { rev } => {
                let client = cluster_client(&cli, client, *cluster).await;
                let mut rows = Vec::new();
                let mut failed = None;
                for (i, ep) in client.endpoints().iter().enumerate() {
                    match client.hash_kv_on(i, *rev).await {
                        Ok(h) => rows.push((ep.clone(), h)),
                        Err(e) => {
                            eprintln!("Failed to get the hash of endpoint {ep} ({e})");
                            failed = Some(e);
                        }
                    }
                }
                match format {
                    Format::Json => {
                        let items: Vec<String> = rows
                            .iter()
                            .map(|(ep, h)| {
                                format!(
                                    "{{\"Endpoint\":{},\"HashKV\":{{\"header\":{},\"hash\":{},\"compact_revision\":{}}}}}",
                                    out::json_str(ep),
                                    out::header_json(&h.header),
                                    h.hash,
                                    h.compact_revision
                                )
                            })
                            .collect();
                        println!("[{}]", items.join(","));
                    }
                    _ => {
                        for (ep, h) in rows {
                            println!("{ep}, {}", h.hash);
                        }
                    }
                }
                if let Some(e) = failed {
                    fail(e);
                }
            }
        },
        Cmd::Snapshot(SnapshotCmd::Save { filename }) => {
            if client.endpoints().len() != 1 {
                exit_error(
                    EXIT_BAD_ARGS,
                    &format!(
                        "snapshot must be requested to one selected node, not multiple {:?}",
                        client.endpoints()
                    ),
                );
            }
            let part = format!("{filename}.part");
            let f = tokio::fs::File::create(&part)
                .await
                .unwrap_or_else(|e| exit_error(EXIT_ERROR, &e.to_string()));
            let mut w = progress::CountingWriter::new(f, progress::Progress::for_stdout());
            let r = client.snapshot_on(0, &mut w).await;
            let f = w.finish();
            if let Err(e) = r {
                // etcdctl removes the partial file and exits "interrupted".
                drop(f);
                let _ = std::fs::remove_file(&part);
                exit_error(EXIT_INTERRUPTED, &e.to_string());
            }
            f.sync_all()
                .await
                .unwrap_or_else(|e| exit_error(EXIT_ERROR, &e.to_string()));
            std::fs::rename(&part, filename)
                .unwrap_or_else(|e| exit_error(EXIT_ERROR, &e.to_string()));
            println!("Snapshot saved at {filename}");
        }
        Cmd::Alarm(a) => match a {
            AlarmCmd::List => {
                let r = client.alarm_list().await.unwrap_or_else(|e| fail(e));
                pr.alarms(&r);
            }
            AlarmCmd::Disarm => {
                let r = client
                    .alarm(p::AlarmAction::Deactivate, 0, p::AlarmType::None)
                    .await
                    .unwrap_or_else(|e| fail(e));
                pr.alarms(&r);
            }
        },
        Cmd::Lock { name, command, ttl } => {
            let session = keel_client::Session::new(&client, *ttl)
                .await
                .unwrap_or_else(|e| fail(e));
            let m = keel_client::Mutex::new(&session, name.clone());
            let guard = m.lock().await.unwrap_or_else(|e| fail(e));
            if !command.is_empty() {
                let status = std::process::Command::new(&command[0])
                    .args(&command[1..])
                    .env(
                        "ETCD_LOCK_KEY",
                        String::from_utf8_lossy(guard.key()).as_ref(),
                    )
                    .env("ETCD_LOCK_REV", guard.fencing_token().to_string())
                    .status();
                let _ = guard.unlock().await;
                let _ = session.close().await;
                return match status {
                    Ok(s) => s.code().unwrap_or(EXIT_ERROR),
                    Err(e) => exit_error(EXIT_ERROR, &e.to_string()),
                };
            }
            println!("{}", String::from_utf8_lossy(guard.key()));
            let _ = tokio::signal::ctrl_c().await;
            let _ = guard.unlock().await;
            let _ = session.close().await;
        }
        Cmd::Elect {
            name,
            proposal,
            listen,
        } => {
            let session = keel_client::Session::new(&client, 60)
                .await
                .unwrap_or_else(|e| fail(e));
            let e = keel_client::Election::new(&session, name.clone());
            if *listen {
                let mut rx = e.observe();
                loop {
                    tokio::select! {
                        kv = rx.recv() => match kv {
                            Some(Ok(kv)) => {
                                println!("{}", String::from_utf8_lossy(&kv.key));
                                println!("{}", String::from_utf8_lossy(&kv.value));
                            }
                            Some(Err(err)) => fail(err),
                            None => break,
                        },
                        _ = tokio::signal::ctrl_c() => break,
                    }
                }
            } else {
                let Some(proposal) = proposal else {
                    exit_error(EXIT_BAD_ARGS, "no proposal argument but -l not set")
                };
                let lead = e
                    .campaign(proposal.as_bytes().to_vec())
                    .await
                    .unwrap_or_else(|e| fail(e));
                println!("{}", String::from_utf8_lossy(lead.key()));
                println!("{proposal}");
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = session.done() => exit_error(EXIT_ERROR, "elect: session expired"),
                }
                let _ = lead.resign().await;
                let _ = session.close().await;
            }
        }
        Cmd::MoveLeader { target } => {
            let target_id = u64::from_str_radix(target, 16)
                .unwrap_or_else(|e| exit_error(EXIT_BAD_ARGS, &format!("{e}")));
            // Find the leader among the endpoints, as etcdctl does.
            let mut leader = None;
            for i in 0..client.endpoints().len() {
                if let Ok(s) = client.status_on(i).await {
                    if s.leader == s.header.member_id {
                        leader = Some(s.leader);
                    }
                }
            }
            let Some(leader) = leader else {
                exit_error(EXIT_ERROR, "no leader endpoint given at [{}]")
            };
            client
                .move_leader(target_id)
                .await
                .unwrap_or_else(|e| fail(e));
            println!("Leadership transferred from {leader:x} to {target_id:x}");
        }
        Cmd::Version | Cmd::Check(_) => unreachable!(),
    }
    0
}

pub const EXIT_INTERRUPTED: i32 = 5;
