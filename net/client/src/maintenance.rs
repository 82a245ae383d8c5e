//! Cluster and maintenance calls: member list, status, hash, hash_kv, defragment, alarms,
//! snapshot (streamed into a writer), move leader. Calls that concern one member take the
//! endpoint to ask (`*_on`), as etcdctl's `endpoint status` does.

use keel_proto as p;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::client::{expect_response, Client, Kind};
use crate::conn::ConnError;
use crate::error::{Error, Result};

impl Client {
    /// The cluster's members.
    pub async fn member_list(&self) -> Result<p::MemberListResponse> {
        let r = self
            .call(
                p::Request::MemberList(p::MemberListRequest {
                    linearizable: false,
                }),
                Kind::Idempotent,
            )
            .await?;
        expect_response!(r, MemberList)
    }

    /// Adds a member with `peer_urls` (as a learner when `is_learner`).
    pub async fn member_add(
        &self,
        peer_urls: Vec<String>,
        is_learner: bool,
    ) -> Result<p::MemberAddResponse> {
        let r = self
            .call(
                p::Request::MemberAdd(p::MemberAddRequest {
                    peer_urls,
                    is_learner,
                }),
                Kind::Write,
            )
            .await?;
        expect_response!(r, MemberAdd)
    }

    /// Removes member `id`.
    pub async fn member_remove(&self, id: u64) -> Result<p::MemberRemoveResponse> {
        let r = self
            .call(
                p::Request::MemberRemove(p::MemberRemoveRequest { id }),
                Kind::Write,
            )
            .await?;
        expect_response!(r, MemberRemove)
    }

    /// Changes member `id`'s peer URLs.
    pub async fn member_update(
        &self,
        id: u64,
        peer_urls: Vec<String>,
    ) -> Result<p::MemberUpdateResponse> {
        let r = self
            .call(
                p::Request::MemberUpdate(p::MemberUpdateRequest { id, peer_urls }),
                Kind::Write,
            )
            .await?;
        expect_response!(r, MemberUpdate)
    }

    /// Promotes learner `id` to a voting member.
    pub async fn member_promote(&self, id: u64) -> Result<p::MemberPromoteResponse> {
        let r = self
            .call(
                p::Request::MemberPromote(p::MemberPromoteRequest { id }),
                Kind::Write,
            )
            .await?;
        expect_response!(r, MemberPromote)
    }

    /// Status of the member behind endpoint `endpoint` (an index into [`Client::endpoints`]).
    pub async fn status_on(&self, endpoint: usize) -> Result<p::StatusResponse> {
        let r = self
            .call_on(
                p::Request::Status(p::StatusRequest {}),
                Kind::Idempotent,
                Some(endpoint),
            )
            .await?;
        expect_response!(r, Status)
    }

    /// Status of the preferred member.
    pub async fn status(&self) -> Result<p::StatusResponse> {
        let r = self
            .call(p::Request::Status(p::StatusRequest {}), Kind::Idempotent)
            .await?;
        expect_response!(r, Status)
    }

    /// A health probe of endpoint `endpoint`, as etcdctl's `endpoint health` does it: a
    /// linearizable read of the key `health` answered by that member (it needs a leader and a
    /// quorum). Returns how long it took.
    pub async fn health_on(&self, endpoint: usize) -> Result<std::time::Duration> {
        let t = std::time::Instant::now();
        let r = self
            .call_on(
                p::Request::Range(p::RangeRequest {
                    key: b"health".to_vec(),
                    ..Default::default()
                }),
                Kind::Idempotent,
                Some(endpoint),
            )
            .await;
        match r {
            Ok(_) => Ok(t.elapsed()),
            // etcd counts a permission error as healthy: the member answered.
            Err(Error::Server(e)) if e.error_code() == Some(p::ErrorCode::PermissionDenied) => {
                Ok(t.elapsed())
            }
            Err(e) => Err(e),
        }
    }

    /// The hash of the member's whole backend (endpoint `endpoint`).
    pub async fn hash_on(&self, endpoint: usize) -> Result<p::HashResponse> {
        let r = self
            .call_on(
                p::Request::Hash(p::HashRequest {}),
                Kind::Idempotent,
                Some(endpoint),
            )
            .await?;
        expect_response!(r, Hash)
    }

    /// The hash of the key-value history up to `revision` (0: latest) on endpoint `endpoint`.
    pub async fn hash_kv_on(&self, endpoint: usize, revision: i64) -> Result<p::HashKvResponse> {
        let r = self
            .call_on(
                p::Request::HashKv(p::HashKvRequest { revision }),
                Kind::Idempotent,
                Some(endpoint),
            )
            .await?;
        expect_response!(r, HashKv)
    }

    /// Defragments the backend of endpoint `endpoint`.
    pub async fn defragment_on(&self, endpoint: usize) -> Result<p::DefragmentResponse> {
        let r = self
            .call_on(
                p::Request::Defragment(p::DefragmentRequest {}),
                Kind::Idempotent,
                Some(endpoint),
            )
            .await?;
        expect_response!(r, Defragment)
    }

    /// Lists the active alarms.
    pub async fn alarm_list(&self) -> Result<p::AlarmResponse> {
        self.alarm(p::AlarmAction::Get, 0, p::AlarmType::None).await
    }

    /// Raises, clears or lists alarms (etcd's `Alarm`).
    pub async fn alarm(
        &self,
        action: p::AlarmAction,
        member_id: u64,
        alarm: p::AlarmType,
    ) -> Result<p::AlarmResponse> {
        let kind = if action == p::AlarmAction::Get {
            Kind::Idempotent
        } else {
            Kind::Write
        };
        let r = self
            .call(
                p::Request::Alarm(p::AlarmRequest {
                    action,
                    member_id,
                    alarm,
                }),
                kind,
            )
            .await?;
        expect_response!(r, Alarm)
    }

    /// Asks the leader to hand leadership to member `target_id`.
    pub async fn move_leader(&self, target_id: u64) -> Result<p::MoveLeaderResponse> {
        let r = self
            .call(
                p::Request::MoveLeader(p::MoveLeaderRequest { target_id }),
                Kind::Write,
            )
            .await?;
        let r = expect_response!(r, MoveLeader)?;
        // Leadership moved: prefer the new leader from now on. The members may learn of the
        // new term a moment after the answer; wait (bounded) until one reports the target as
        // leader and is reachable through our endpoints.
        if self.options().prefer_leader {
            let deadline = tokio::time::Instant::now() + self.options().request_timeout;
            while tokio::time::Instant::now() < deadline {
                if self.find_leader().await {
                    let i = self.leader_endpoint();
                    if let Ok(s) = self.status_on(i).await {
                        if s.header.member_id == target_id && s.leader == target_id {
                            break;
                        }
                    }
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
        Ok(r)
    }

    /// Streams a snapshot of endpoint `endpoint`'s backend into `out`; returns the bytes
    /// written. Not retried once a chunk was written.
    pub async fn snapshot_on<W: AsyncWrite + Unpin>(
        &self,
        endpoint: usize,
        out: &mut W,
    ) -> Result<u64> {
        let conn = self.conn(endpoint).await.map_err(Error::Unavailable)?;
        let (_, mut frames) = conn
            .stream(&p::Request::Snapshot(p::SnapshotRequest {}), false)
            .map_err(|e| match e {
                ConnError::NotSent(w) | ConnError::Lost(w) => Error::Unavailable(w),
            })?;
        let mut total = 0u64;
        loop {
            match frames.recv().await {
                Some(Ok((p::Response::Snapshot(s), more))) => {
                    out.write_all(&s.blob)
                        .await
                        .map_err(|e| Error::InvalidArgument(format!("write snapshot: {e}")))?;
                    total += s.blob.len() as u64;
                    if !more {
                        out.flush()
                            .await
                            .map_err(|e| Error::InvalidArgument(format!("write snapshot: {e}")))?;
                        return Ok(total);
                    }
                }
                Some(Ok((p::Response::Error(e), _))) => return Err(Error::Server(e)),
                Some(Ok(_)) => return Err(Error::Protocol("unexpected snapshot frame".into())),
                Some(Err(ConnError::Lost(w))) | Some(Err(ConnError::NotSent(w))) => {
                    return Err(Error::Unavailable(w))
                }
                None => return Err(Error::Unavailable("snapshot stream ended".into())),
            }
        }
    }
}
