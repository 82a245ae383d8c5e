//! A synchronous wrapper: [`blocking::Client`](Client) owns a small tokio runtime and runs the
//! async client's calls to completion. Use [`Client::block_on`] for anything not wrapped here.
//!
//! ```no_run
//! use keel_client::{blocking, ConnectOptions};
//! let c = blocking::Client::connect(["127.0.0.1:2379"], ConnectOptions::default())?;
//! c.put("k", "v")?;
//! assert_eq!(c.get("k")?.kvs[0].value, b"v");
//! // Any builder: run it on the client's runtime.
//! let r = c.block_on(c.inner().get("k").prefix().limit(5))?;
//! # let _ = r;
//! # Ok::<(), keel_client::Error>(())
//! ```

use std::future::IntoFuture;

use keel_proto as p;

use crate::error::{Error, Result};
use crate::ConnectOptions;

/// A blocking keel client.
#[derive(Debug)]
pub struct Client {
    rt: tokio::runtime::Runtime,
    inner: crate::Client,
}

impl Client {
    /// Connects (see [`crate::Client::connect`]).
    pub fn connect<I, S>(endpoints: I, opts: ConnectOptions) -> Result<Client>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| Error::InvalidArgument(format!("runtime: {e}")))?;
        let eps: Vec<String> = endpoints.into_iter().map(Into::into).collect();
        let inner = rt.block_on(crate::Client::connect(eps, opts))?;
        Ok(Client { rt, inner })
    }

    /// The async client (its builders can be run with [`Client::block_on`]).
    pub fn inner(&self) -> &crate::Client {
        &self.inner
    }

    /// Runs any future (or builder, e.g. a [`crate::Get`]) on this client's runtime.
    pub fn block_on<F: IntoFuture>(&self, f: F) -> F::Output {
        self.rt.block_on(f.into_future())
    }

    /// Reads one key.
    pub fn get(&self, key: impl Into<Vec<u8>>) -> Result<p::RangeResponse> {
        self.block_on(self.inner.get(key))
    }

    /// Writes one key.
    pub fn put(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Result<p::PutResponse> {
        self.block_on(self.inner.put(key, value))
    }

    /// Deletes one key.
    pub fn delete(&self, key: impl Into<Vec<u8>>) -> Result<p::DeleteRangeResponse> {
        self.rt
            .block_on(std::future::IntoFuture::into_future(self.inner.delete(key)))
    }

    /// Status of the preferred member.
    pub fn status(&self) -> Result<p::StatusResponse> {
        self.rt.block_on(self.inner.status())
    }

    /// Grants a lease.
    pub fn lease_grant(&self, ttl: i64) -> Result<p::LeaseGrantResponse> {
        self.rt.block_on(self.inner.lease_grant(ttl))
    }
}
