//! Key-value calls in builder style: [`Get`], [`Put`], [`Delete`], [`Txn`] with [`Compare`] and
//! [`Op`], and compaction. A builder made from a [`Client`] is awaited directly (it implements
//! `IntoFuture`); the same builders made with [`Op`] become operations of a transaction.
//!
//! ```no_run
//! # async fn demo(client: keel_client::Client) -> keel_client::Result<()> {
//! use keel_client::{Compare, Op, SortOrder, SortTarget};
//! client.put("/svc/a", "10.0.0.1").lease(0x1234).prev_kv().await?;
//! let r = client.get("/svc/").prefix().sort(SortTarget::Key, SortOrder::Descend).limit(10).await?;
//! let t = client
//!     .txn()
//!     .when([Compare::version("/svc/a").eq(0)])
//!     .and_then([Op::put("/svc/a", "x")])
//!     .or_else([Op::get("/svc/a")])
//!     .await?;
//! # let _ = (r, t); Ok(()) }
//! ```

use std::future::{Future, IntoFuture};
use std::pin::Pin;

use keel_proto as p;
pub use keel_proto::{SortOrder, SortTarget};

use crate::client::{expect_response, Client, Kind};
use crate::error::{Error, Result};

type BoxFut<T> = Pin<Box<dyn Future<Output = Result<T>> + Send>>;

/// The range end that makes `key` a prefix (etcd's `GetPrefixRangeEnd`): `key` with its last
/// byte below 0xff incremented and the rest cut; `"\0"` (every key) when there is none.
pub fn prefix_end(key: &[u8]) -> Vec<u8> {
    let mut end = key.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn missing_client<T: Send + 'static>() -> BoxFut<T> {
    Box::pin(async {
        Err(Error::InvalidArgument(
            "builder made with Op:: has no client; use client.get/put/delete/txn".into(),
        ))
    })
}

/// A range read (etcd's `Get`). Made by [`Client::get`] or [`Op::get`].
#[derive(Debug, Clone)]
#[must_use = "a Get does nothing until awaited or put in a txn"]
pub struct Get {
    client: Option<Client>,
    req: p::RangeRequest,
}

impl Get {
    /// Reads every key with this key as prefix.
    pub fn prefix(mut self) -> Self {
        self.req.range_end = prefix_end(&self.req.key);
        self
    }
    /// Reads every key ≥ this key (range end `"\0"`).
    pub fn from_key(mut self) -> Self {
        self.req.range_end = vec![0];
        self
    }
    /// Reads keys in `[key, end)`.
    pub fn range_end(mut self, end: impl Into<Vec<u8>>) -> Self {
        self.req.range_end = end.into();
        self
    }
    /// Reads at revision `rev` (0: the latest).
    pub fn rev(mut self, rev: i64) -> Self {
        self.req.revision = rev;
        self
    }
    /// At most `n` keys (0: no limit).
    pub fn limit(mut self, n: i64) -> Self {
        self.req.limit = n;
        self
    }
    /// Sorts the result.
    pub fn sort(mut self, target: SortTarget, order: SortOrder) -> Self {
        self.req.sort_target = target;
        self.req.sort_order = order;
        self
    }
    /// Keys without values.
    pub fn keys_only(mut self) -> Self {
        self.req.keys_only = true;
        self
    }
    /// Only the count.
    pub fn count_only(mut self) -> Self {
        self.req.count_only = true;
        self
    }
    /// Served by whichever member is asked, from its local state (may be stale); spread across
    /// endpoints.
    pub fn serializable(mut self) -> Self {
        self.req.serializable = true;
        self
    }
    /// Only keys modified at or after `rev`.
    pub fn min_mod_revision(mut self, rev: i64) -> Self {
        self.req.min_mod_revision = rev;
        self
    }
    /// Only keys modified at or before `rev`.
    pub fn max_mod_revision(mut self, rev: i64) -> Self {
        self.req.max_mod_revision = rev;
        self
    }
    /// Only keys created at or after `rev`.
    pub fn min_create_revision(mut self, rev: i64) -> Self {
        self.req.min_create_revision = rev;
        self
    }
    /// Only keys created at or before `rev`.
    pub fn max_create_revision(mut self, rev: i64) -> Self {
        self.req.max_create_revision = rev;
        self
    }
    /// The request as built.
    pub fn request(&self) -> &p::RangeRequest {
        &self.req
    }
}

impl IntoFuture for Get {
    type Output = Result<p::RangeResponse>;
    type IntoFuture = BoxFut<p::RangeResponse>;
    fn into_future(self) -> Self::IntoFuture {
        let Some(client) = self.client else {
            return missing_client();
        };
        let kind = if self.req.serializable {
            Kind::Serializable
        } else {
            Kind::Idempotent
        };
        Box::pin(async move {
            let r = client.call(p::Request::Range(self.req), kind).await?;
            expect_response!(r, Range)
        })
    }
}

/// A write of one key (etcd's `Put`). Made by [`Client::put`] or [`Op::put`].
#[derive(Debug, Clone)]
#[must_use = "a Put does nothing until awaited or put in a txn"]
pub struct Put {
    client: Option<Client>,
    req: p::PutRequest,
}

impl Put {
    /// Attaches the key to lease `id`.
    pub fn lease(mut self, id: i64) -> Self {
        self.req.lease = id;
        self
    }
    /// Returns the previous key-value.
    pub fn prev_kv(mut self) -> Self {
        self.req.prev_kv = true;
        self
    }
    /// Keeps the current value (the key must exist).
    pub fn ignore_value(mut self) -> Self {
        self.req.ignore_value = true;
        self
    }
    /// Keeps the current lease (the key must exist).
    pub fn ignore_lease(mut self) -> Self {
        self.req.ignore_lease = true;
        self
    }
    /// The request as built.
    pub fn request(&self) -> &p::PutRequest {
        &self.req
    }
}

impl IntoFuture for Put {
    type Output = Result<p::PutResponse>;
    type IntoFuture = BoxFut<p::PutResponse>;
    fn into_future(self) -> Self::IntoFuture {
        let Some(client) = self.client else {
            return missing_client();
        };
        Box::pin(async move {
            let r = client.call(p::Request::Put(self.req), Kind::Write).await?;
            expect_response!(r, Put)
        })
    }
}

/// A delete of a key or range (etcd's `Delete`). Made by [`Client::delete`] or [`Op::delete`].
#[derive(Debug, Clone)]
#[must_use = "a Delete does nothing until awaited or put in a txn"]
pub struct Delete {
    client: Option<Client>,
    req: p::DeleteRangeRequest,
}

impl Delete {
    /// Deletes every key with this prefix.
    pub fn prefix(mut self) -> Self {
        self.req.range_end = prefix_end(&self.req.key);
        self
    }
    /// Deletes every key ≥ this key.
    pub fn from_key(mut self) -> Self {
        self.req.range_end = vec![0];
        self
    }
    /// Deletes keys in `[key, end)`.
    pub fn range_end(mut self, end: impl Into<Vec<u8>>) -> Self {
        self.req.range_end = end.into();
        self
    }
    /// Returns the deleted key-values.
    pub fn prev_kv(mut self) -> Self {
        self.req.prev_kv = true;
        self
    }
    /// The request as built.
    pub fn request(&self) -> &p::DeleteRangeRequest {
        &self.req
    }
}

impl IntoFuture for Delete {
    type Output = Result<p::DeleteRangeResponse>;
    type IntoFuture = BoxFut<p::DeleteRangeResponse>;
    fn into_future(self) -> Self::IntoFuture {
        let Some(client) = self.client else {
            return missing_client();
        };
        Box::pin(async move {
            let r = client
                .call(p::Request::DeleteRange(self.req), Kind::Write)
                .await?;
            expect_response!(r, DeleteRange)
        })
    }
}

/// One operation of a transaction.
#[derive(Debug, Clone)]
pub enum Op {
    /// A range read.
    Get(Get),
    /// A put.
    Put(Put),
    /// A delete.
    Delete(Delete),
    /// A nested transaction.
    Txn(Txn),
}

impl Op {
    /// A get operation (chain [`Get`]'s options, then wrap with `.into()` or use as is through
    /// `From`).
    pub fn get(key: impl Into<Vec<u8>>) -> Get {
        Get {
            client: None,
            req: p::RangeRequest {
                key: key.into(),
                ..Default::default()
            },
        }
    }
    /// A put operation.
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Put {
        Put {
            client: None,
            req: p::PutRequest {
                key: key.into(),
                value: value.into(),
                ..Default::default()
            },
        }
    }
    /// A delete operation.
    pub fn delete(key: impl Into<Vec<u8>>) -> Delete {
        Delete {
            client: None,
            req: p::DeleteRangeRequest {
                key: key.into(),
                ..Default::default()
            },
        }
    }
    fn into_request(self) -> p::RequestOp {
        match self {
            Op::Get(g) => p::RequestOp::Range(g.req),
            Op::Put(x) => p::RequestOp::Put(x.req),
            Op::Delete(d) => p::RequestOp::DeleteRange(d.req),
            Op::Txn(t) => p::RequestOp::Txn(t.req),
        }
    }
}

impl From<Get> for Op {
    fn from(g: Get) -> Op {
        Op::Get(g)
    }
}
impl From<Put> for Op {
    fn from(x: Put) -> Op {
        Op::Put(x)
    }
}
impl From<Delete> for Op {
    fn from(d: Delete) -> Op {
        Op::Delete(d)
    }
}
impl From<Txn> for Op {
    fn from(t: Txn) -> Op {
        Op::Txn(t)
    }
}

/// A comparison of a transaction's guard: start with a target ([`Compare::version`], …), finish
/// with an operator (`eq`, `ne`, `gt`, `lt`).
#[derive(Debug, Clone)]
pub struct Compare(p::Compare);

/// A comparison waiting for its operator and operand.
#[derive(Debug, Clone)]
#[must_use]
pub struct CompareTarget {
    key: Vec<u8>,
    target: p::CompareTarget,
    range_end: Vec<u8>,
}

impl CompareTarget {
    /// Compares every key with this key as prefix.
    pub fn prefix(mut self) -> Self {
        self.range_end = prefix_end(&self.key);
        self
    }
    fn finish(self, result: p::CompareResult, v: CmpValue) -> Compare {
        let target_union = match (self.target, v) {
            (p::CompareTarget::Version, CmpValue::Int(n)) => p::TargetUnion::Version(n),
            (p::CompareTarget::Create, CmpValue::Int(n)) => p::TargetUnion::CreateRevision(n),
            (p::CompareTarget::Mod, CmpValue::Int(n)) => p::TargetUnion::ModRevision(n),
            (p::CompareTarget::Lease, CmpValue::Int(n)) => p::TargetUnion::Lease(n),
            (p::CompareTarget::Value, CmpValue::Bytes(b)) => p::TargetUnion::Value(b),
            (p::CompareTarget::Value, CmpValue::Int(n)) => {
                p::TargetUnion::Value(n.to_string().into_bytes())
            }
            (_, CmpValue::Bytes(b)) => {
                p::TargetUnion::Version(String::from_utf8_lossy(&b).parse().unwrap_or(0))
            }
        };
        Compare(p::Compare {
            result,
            target: self.target,
            key: self.key,
            target_union,
            range_end: self.range_end,
        })
    }
    /// `target == v`.
    pub fn eq(self, v: impl Into<CmpValue>) -> Compare {
        self.finish(p::CompareResult::Equal, v.into())
    }
    /// `target != v`.
    pub fn ne(self, v: impl Into<CmpValue>) -> Compare {
        self.finish(p::CompareResult::NotEqual, v.into())
    }
    /// `target > v`.
    pub fn gt(self, v: impl Into<CmpValue>) -> Compare {
        self.finish(p::CompareResult::Greater, v.into())
    }
    /// `target < v`.
    pub fn lt(self, v: impl Into<CmpValue>) -> Compare {
        self.finish(p::CompareResult::Less, v.into())
    }
}

/// The operand of a comparison: a number (version, revisions, lease) or bytes (value).
#[derive(Debug, Clone)]
pub enum CmpValue {
    /// A number.
    Int(i64),
    /// Bytes.
    Bytes(Vec<u8>),
}
impl From<i64> for CmpValue {
    fn from(n: i64) -> Self {
        CmpValue::Int(n)
    }
}
impl From<&str> for CmpValue {
    fn from(s: &str) -> Self {
        CmpValue::Bytes(s.as_bytes().to_vec())
    }
}
impl From<Vec<u8>> for CmpValue {
    fn from(b: Vec<u8>) -> Self {
        CmpValue::Bytes(b)
    }
}
impl From<&[u8]> for CmpValue {
    fn from(b: &[u8]) -> Self {
        CmpValue::Bytes(b.to_vec())
    }
}

impl Compare {
    fn target(key: impl Into<Vec<u8>>, target: p::CompareTarget) -> CompareTarget {
        CompareTarget {
            key: key.into(),
            target,
            range_end: Vec::new(),
        }
    }
    /// Compares the key's version (0: the key does not exist).
    pub fn version(key: impl Into<Vec<u8>>) -> CompareTarget {
        Self::target(key, p::CompareTarget::Version)
    }
    /// Compares the key's create revision (0: the key does not exist).
    pub fn create_revision(key: impl Into<Vec<u8>>) -> CompareTarget {
        Self::target(key, p::CompareTarget::Create)
    }
    /// Compares the key's mod revision.
    pub fn mod_revision(key: impl Into<Vec<u8>>) -> CompareTarget {
        Self::target(key, p::CompareTarget::Mod)
    }
    /// Compares the key's value.
    pub fn value(key: impl Into<Vec<u8>>) -> CompareTarget {
        Self::target(key, p::CompareTarget::Value)
    }
    /// Compares the key's lease.
    pub fn lease(key: impl Into<Vec<u8>>) -> CompareTarget {
        Self::target(key, p::CompareTarget::Lease)
    }
    /// The wire form.
    pub fn into_inner(self) -> p::Compare {
        self.0
    }
}

impl From<p::Compare> for Compare {
    fn from(c: p::Compare) -> Compare {
        Compare(c)
    }
}

/// A transaction: if every comparison of `when` holds, run `and_then`, else `or_else`.
#[derive(Debug, Clone, Default)]
#[must_use = "a Txn does nothing until awaited"]
pub struct Txn {
    client: Option<Client>,
    req: p::TxnRequest,
}

impl Txn {
    /// A transaction without a client (to nest in another one).
    pub fn new() -> Txn {
        Txn::default()
    }
    /// Adds guard comparisons.
    pub fn when(mut self, cmps: impl IntoIterator<Item = Compare>) -> Self {
        self.req.compare.extend(cmps.into_iter().map(|c| c.0));
        self
    }
    /// Operations run when every comparison holds.
    pub fn and_then<O: Into<Op>>(mut self, ops: impl IntoIterator<Item = O>) -> Self {
        self.req
            .success
            .extend(ops.into_iter().map(|o| o.into().into_request()));
        self
    }
    /// Operations run otherwise.
    pub fn or_else<O: Into<Op>>(mut self, ops: impl IntoIterator<Item = O>) -> Self {
        self.req
            .failure
            .extend(ops.into_iter().map(|o| o.into().into_request()));
        self
    }
    /// The request as built.
    pub fn request(&self) -> &p::TxnRequest {
        &self.req
    }
    /// A transaction from a wire request (e.g. parsed by keelctl).
    pub fn from_request(client: &Client, req: p::TxnRequest) -> Txn {
        Txn {
            client: Some(client.clone()),
            req,
        }
    }
}

fn read_only(ops: &[p::RequestOp]) -> bool {
    ops.iter().all(|o| match o {
        p::RequestOp::Range(_) => true,
        p::RequestOp::Txn(t) => read_only(&t.success) && read_only(&t.failure),
        _ => false,
    })
}

impl IntoFuture for Txn {
    type Output = Result<p::TxnResponse>;
    type IntoFuture = BoxFut<p::TxnResponse>;
    fn into_future(self) -> Self::IntoFuture {
        let Some(client) = self.client else {
            return missing_client();
        };
        let kind = if read_only(&self.req.success) && read_only(&self.req.failure) {
            Kind::Idempotent
        } else {
            Kind::Write
        };
        Box::pin(async move {
            let r = client.call(p::Request::Txn(self.req), kind).await?;
            expect_response!(r, Txn)
        })
    }
}

impl Client {
    /// A read of `key` (chain options, then `.await`).
    pub fn get(&self, key: impl Into<Vec<u8>>) -> Get {
        Get {
            client: Some(self.clone()),
            ..Op::get(key)
        }
    }
    /// A write of `key` = `value` (chain options, then `.await`). Never retried once it may have
    /// reached a server: an ambiguous failure is [`Error::Unknown`].
    pub fn put(&self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Put {
        Put {
            client: Some(self.clone()),
            ..Op::put(key, value)
        }
    }
    /// A delete of `key` (chain options, then `.await`).
    pub fn delete(&self, key: impl Into<Vec<u8>>) -> Delete {
        Delete {
            client: Some(self.clone()),
            ..Op::delete(key)
        }
    }
    /// A transaction (chain `when`/`and_then`/`or_else`, then `.await`).
    pub fn txn(&self) -> Txn {
        Txn {
            client: Some(self.clone()),
            req: p::TxnRequest::default(),
        }
    }
    /// Compacts the key-value history up to `revision`; `physical`: answer only once the
    /// compaction is applied to the backend.
    pub async fn compact(&self, revision: i64, physical: bool) -> Result<p::CompactionResponse> {
        let r = self
            .call(
                p::Request::Compact(p::CompactionRequest { revision, physical }),
                Kind::Write,
            )
            .await?;
        expect_response!(r, Compact)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_last_byte_below_ff() {
        assert_eq!(prefix_end(b"abc"), b"abd");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
    }

    #[test]
    fn read_only_txn_detection() {
        let t = Txn::new().and_then([Op::get("a")]).or_else([Op::get("b")]);
        assert!(read_only(&t.req.success) && read_only(&t.req.failure));
        let t = Txn::new().and_then([Op::from(Op::get("a")), Op::from(Op::put("b", "c"))]);
        assert!(!read_only(&t.req.success));
    }
}
