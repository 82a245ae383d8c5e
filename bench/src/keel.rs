//! The keel target: the same workloads over keel's native protocol, through the keel-client
//! library. Owns [`Keel`] (the [`Target`] impl), [`KeelClient`] and [`KeelWatch`].
//!
//! Connection mapping follows etcd's tool: connection `i` is a `keel_client::Client` on
//! `endpoints[i % n]` alone (so `--conns` is the number of TCP connections, each pipelining its
//! clients' requests), and client `j` is a clone of connection `j % conns`.

use keel_client::proto as p;
use keel_client::{Client, ConnectOptions};
use tokio::sync::mpsc;

use crate::target::{
    BenchClient, BenchError, BenchWatch, ConnectSpec, Consistency, RangeSpec, Target, TxnOp,
    WatchEvent, WatchMessage,
};

/// keel over its binary protocol.
#[derive(Debug, Default, Clone, Copy)]
pub struct Keel;

/// One benchmark client: a clone of one connection's `keel_client::Client`.
#[derive(Clone)]
pub struct KeelClient {
    inner: Client,
}

fn err(e: keel_client::Error) -> BenchError {
    BenchError(e.to_string())
}

fn strip(endpoint: &str) -> String {
    endpoint
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .to_string()
}

impl Target for Keel {
    type Client = KeelClient;

    async fn connect(&self, spec: &ConnectSpec) -> Result<Vec<KeelClient>, BenchError> {
        if spec.endpoints.is_empty() || spec.conns == 0 || spec.clients == 0 {
            return Err(BenchError("no endpoints, connections or clients".into()));
        }
        let mut conns = Vec::with_capacity(spec.conns);
        for i in 0..spec.conns {
            let ep = strip(&spec.endpoints[i % spec.endpoints.len()]);
            let c = Client::connect([ep], ConnectOptions::default())
                .await
                .map_err(err)?;
            conns.push(c);
        }
        Ok((0..spec.clients)
            .map(|j| KeelClient {
                inner: conns[j % conns.len()].clone(),
            })
            .collect())
    }
}

fn get(c: &Client, spec: &RangeSpec) -> keel_client::Get {
    let mut g = c.get(spec.key.clone());
    if !spec.range_end.is_empty() {
        g = g.range_end(spec.range_end.clone());
    }
    if spec.limit > 0 {
        g = g.limit(spec.limit);
    }
    if spec.count_only {
        g = g.count_only();
    }
    if spec.keys_only {
        g = g.keys_only();
    }
    if spec.consistency == Consistency::Serializable {
        g = g.serializable();
    }
    g
}

impl BenchClient for KeelClient {
    type Watch = KeelWatch;

    async fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), BenchError> {
        self.inner
            .put(key.to_vec(), value.to_vec())
            .await
            .map(|_| ())
            .map_err(err)
    }

    async fn range(&mut self, spec: &RangeSpec) -> Result<i64, BenchError> {
        get(&self.inner, spec).await.map(|r| r.count).map_err(err)
    }

    async fn txn(&mut self, ops: &[TxnOp]) -> Result<(), BenchError> {
        let ops: Vec<keel_client::Op> = ops
            .iter()
            .map(|op| match op {
                TxnOp::Put { key, value } => {
                    keel_client::Op::put(key.clone(), value.clone()).into()
                }
                TxnOp::Range(spec) => keel_client::Op::get(spec.key.clone()).into(),
            })
            .collect();
        self.inner
            .txn()
            .and_then(ops)
            .await
            .map(|_| ())
            .map_err(err)
    }

    async fn watch(&mut self, key: &[u8], range_end: &[u8]) -> Result<KeelWatch, BenchError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut w = KeelWatch {
            client: self.inner.clone(),
            tx,
            rx,
            next_id: 0,
        };
        w.add(key, range_end).await?;
        Ok(w)
    }

    async fn lease_grant(&mut self, ttl_s: i64) -> Result<i64, BenchError> {
        self.inner
            .lease_grant(ttl_s)
            .await
            .map(|r| r.id)
            .map_err(err)
    }

    async fn lease_keep_alive_once(&mut self, id: i64) -> Result<(), BenchError> {
        self.inner
            .lease_keep_alive_once(id)
            .await
            .map(|_| ())
            .map_err(err)
    }
}

/// Watchers of one benchmark "stream": keel opens one stream per watcher on the shared
/// connection; their messages are merged here.
pub struct KeelWatch {
    client: Client,
    tx: mpsc::UnboundedSender<Result<WatchMessage, BenchError>>,
    rx: mpsc::UnboundedReceiver<Result<WatchMessage, BenchError>>,
    next_id: i64,
}

impl BenchWatch for KeelWatch {
    async fn add(&mut self, key: &[u8], range_end: &[u8]) -> Result<(), BenchError> {
        let mut b = self.client.watch(key.to_vec());
        if !range_end.is_empty() {
            b = b.range_end(range_end.to_vec());
        }
        let mut w = b.await.map_err(err)?;
        let id = self.next_id;
        self.next_id += 1;
        let tx = self.tx.clone();
        let _ = tx.send(Ok(WatchMessage::Created { watch_id: id }));
        tokio::spawn(async move {
            while let Some(r) = w.next().await {
                let msg = r.map_err(err).map(|resp: p::WatchResponse| {
                    if resp.events.is_empty() {
                        WatchMessage::Other
                    } else {
                        WatchMessage::Events {
                            watch_id: id,
                            events: resp
                                .events
                                .into_iter()
                                .map(|e| WatchEvent {
                                    key: e.kv.key,
                                    value: e.kv.value,
                                    mod_revision: e.kv.mod_revision,
                                })
                                .collect(),
                        }
                    }
                });
                if tx.send(msg).is_err() {
                    break;
                }
            }
        });
        Ok(())
    }

    async fn next(&mut self) -> Result<Option<WatchMessage>, BenchError> {
        self.rx.recv().await.transpose()
    }
}
