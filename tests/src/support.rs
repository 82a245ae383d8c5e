//! Small pieces every differential test needs: a seeded RNG (SplitMix64, so a failing run
//! replays from its printed seed), `u64` knobs from the environment, and a blocking gRPC client
//! that sends etcd's protobuf messages verbatim.

/// SplitMix64: one seed drives a whole run.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `pct` percent.
    pub fn pct(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }

    /// Uniform in `lo..=hi`.
    pub fn range_i64(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }

    /// A uniformly chosen element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
}

/// The `u64` in environment variable `name`, if set (a malformed value is a test error).
pub fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a u64"))
    })
}

/// A blocking gRPC connection to etcd: its own current-thread tokio runtime and a channel.
pub struct Grpc {
    pub rt: tokio::runtime::Runtime,
    pub channel: tonic::transport::Channel,
}

impl Grpc {
    pub fn connect(url: &str) -> Grpc {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let endpoint = tonic::transport::Endpoint::from_shared(url.to_string()).expect("url");
        let channel = rt.block_on(endpoint.connect()).expect("connect to etcd");
        Grpc { rt, channel }
    }

    /// One unary call of `method` (e.g. "/etcdserverpb.KV/Range") with etcd's own message.
    pub fn unary<Q, R>(&self, method: &'static str, q: Q) -> Result<R, tonic::Status>
    where
        Q: prost::Message + Send + Sync + 'static,
        R: prost::Message + Default + Send + Sync + 'static,
    {
        self.rt.block_on(async {
            let mut g = tonic::client::Grpc::new(self.channel.clone());
            g.ready()
                .await
                .map_err(|e| tonic::Status::unknown(format!("channel not ready: {e}")))?;
            let path = tonic::codegen::http::uri::PathAndQuery::from_static(method);
            let codec = tonic_prost::ProstCodec::<Q, R>::default();
            g.unary(tonic::Request::new(q), path, codec)
                .await
                .map(|r| r.into_inner())
        })
    }
}
