//! The etcd target: etcd's v3 API over gRPC, through the etcd-client crate.
//!
//! Owns [`Etcd`] (the [`Target`] impl), [`EtcdClient`] and [`EtcdWatch`]. Connection mapping
//! matches etcd's benchmark tool: one tonic channel (one HTTP/2 connection) per `--conns`,
//! connection `i` to endpoint `i % endpoints`, client `j` on connection `j % conns`.

use etcd_client::{
    Client, GetOptions, Txn, TxnOp as EtcdTxnOp, WatchOptions, WatchResponse, WatchStream,
};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use tonic::transport::{Endpoint, Uri};

use crate::target::{
    BenchClient, BenchError, BenchWatch, ConnectSpec, Consistency, RangeSpec, Target, TxnOp,
    WatchEvent, WatchMessage,
};

/// etcd over gRPC.
#[derive(Debug, Clone, Copy)]
pub struct Etcd {
    /// Connect through [`crate::coalesce`] (writes batched by a writer task per connection, as
    /// etcd's Go tool does) rather than tonic's plain TCP connector.
    pub coalesce_writes: bool,
}

impl Default for Etcd {
    fn default() -> Self {
        Self {
            coalesce_writes: true,
        }
    }
}

/// Hands tonic a [`crate::coalesce::CoalescedStream`] for each connection it opens.
#[derive(Debug, Clone, Copy)]
struct CoalescingConnector;

impl tower_service::Service<Uri> for CoalescingConnector {
    type Response = TokioIo<crate::coalesce::CoalescedStream>;
    type Error = std::io::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(async move {
            let host = uri.host().unwrap_or("127.0.0.1").to_owned();
            let port = uri.port_u16().unwrap_or(80);
            Ok(TokioIo::new(
                crate::coalesce::connect(&format!("{host}:{port}")).await?,
            ))
        })
    }
}

/// One client: a handle sharing one of the run's HTTP/2 connections.
#[derive(Clone)]
pub struct EtcdClient {
    inner: Client,
}

/// One gRPC watch stream.
pub struct EtcdWatch {
    stream: WatchStream,
}

fn err(e: impl std::fmt::Display) -> BenchError {
    BenchError(e.to_string())
}

fn url(endpoint: &str) -> String {
    if endpoint.starts_with("http://") || endpoint.starts_with("https://") {
        endpoint.to_owned()
    } else {
        format!("http://{endpoint}")
    }
}

impl Target for Etcd {
    type Client = EtcdClient;

    async fn connect(&self, spec: &ConnectSpec) -> Result<Vec<EtcdClient>, BenchError> {
        if spec.endpoints.is_empty() || spec.conns == 0 || spec.clients == 0 {
            return Err(BenchError(
                "need at least one endpoint, conn and client".into(),
            ));
        }
        let mut conns = Vec::with_capacity(spec.conns);
        for i in 0..spec.conns {
            let ep = &spec.endpoints[i % spec.endpoints.len()];
            let endpoint = Endpoint::from_shared(url(ep)).map_err(err)?;
            let channel = if self.coalesce_writes {
                endpoint.connect_with_connector(CoalescingConnector).await
            } else {
                endpoint.connect().await
            }
            .map_err(|e| BenchError(format!("connect {ep}: {e}")))?;
            conns.push(channel);
        }
        let mut clients = Vec::with_capacity(spec.clients);
        for j in 0..spec.clients {
            let channel = etcd_client::Channel::Tonic(conns[j % conns.len()].clone());
            let inner = Client::from_channel(channel, None).await.map_err(err)?;
            clients.push(EtcdClient { inner });
        }
        Ok(clients)
    }
}

fn get_options(spec: &RangeSpec) -> GetOptions {
    let mut o = GetOptions::new();
    if !spec.range_end.is_empty() {
        o = o.with_range(spec.range_end.clone());
    }
    if spec.limit > 0 {
        o = o.with_limit(spec.limit);
    }
    if spec.consistency == Consistency::Serializable {
        o = o.with_serializable();
    }
    if spec.count_only {
        o = o.with_count_only();
    }
    if spec.keys_only {
        o = o.with_keys_only();
    }
    o
}

impl BenchClient for EtcdClient {
    type Watch = EtcdWatch;

    async fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), BenchError> {
        self.inner
            .put(key, value, None)
            .await
            .map(|_| ())
            .map_err(err)
    }

    async fn range(&mut self, spec: &RangeSpec) -> Result<i64, BenchError> {
        let resp = self
            .inner
            .get(spec.key.clone(), Some(get_options(spec)))
            .await
            .map_err(err)?;
        Ok(resp.count())
    }

    async fn txn(&mut self, ops: &[TxnOp]) -> Result<(), BenchError> {
        let ops: Vec<EtcdTxnOp> = ops
            .iter()
            .map(|op| match op {
                TxnOp::Put { key, value } => EtcdTxnOp::put(key.clone(), value.clone(), None),
                TxnOp::Range(r) => EtcdTxnOp::get(r.key.clone(), Some(get_options(r))),
            })
            .collect();
        self.inner
            .txn(Txn::new().and_then(ops))
            .await
            .map(|_| ())
            .map_err(err)
    }

    async fn watch(&mut self, key: &[u8], range_end: &[u8]) -> Result<EtcdWatch, BenchError> {
        let stream = self
            .inner
            .watch(key, Some(watch_options(range_end)))
            .await
            .map_err(err)?;
        Ok(EtcdWatch { stream })
    }

    async fn lease_grant(&mut self, ttl_s: i64) -> Result<i64, BenchError> {
        Ok(self.inner.lease_grant(ttl_s, None).await.map_err(err)?.id())
    }

    async fn lease_keep_alive_once(&mut self, id: i64) -> Result<(), BenchError> {
        // etcd-client's keep_alive opens a stream, sends one renewal and waits for its response
        // (failing if the lease is gone): one round trip. Dropping the pair closes the stream,
        // as clientv3's KeepAliveOnce does.
        self.inner
            .lease_keep_alive(id)
            .await
            .map(|_| ())
            .map_err(err)
    }
}

fn watch_options(range_end: &[u8]) -> WatchOptions {
    let o = WatchOptions::new();
    if range_end.is_empty() {
        o
    } else {
        o.with_range(range_end.to_vec())
    }
}

fn message(resp: WatchResponse) -> WatchMessage {
    if resp.created() {
        return WatchMessage::Created {
            watch_id: resp.watch_id(),
        };
    }
    if resp.events().is_empty() {
        return WatchMessage::Other;
    }
    let events = resp
        .events()
        .iter()
        .filter_map(|e| e.kv())
        .map(|kv| WatchEvent {
            key: kv.key().to_vec(),
            value: kv.value().to_vec(),
            mod_revision: kv.mod_revision(),
        })
        .collect();
    WatchMessage::Events {
        watch_id: resp.watch_id(),
        events,
    }
}

impl BenchWatch for EtcdWatch {
    async fn add(&mut self, key: &[u8], range_end: &[u8]) -> Result<(), BenchError> {
        self.stream
            .watch(key, Some(watch_options(range_end)))
            .await
            .map_err(err)
    }

    async fn next(&mut self) -> Result<Option<WatchMessage>, BenchError> {
        Ok(self.stream.message().await.map_err(err)?.map(message))
    }
}
