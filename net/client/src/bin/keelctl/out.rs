//! keelctl's printers: etcdctl 3.4's `simple`, `json` and `table` layouts, byte for byte.
//! JSON follows what Go's `encoding/json` makes of etcd's protobuf structs: `omitempty` fields
//! left out when zero, bytes as standard base64, Go's string escaping, the same field order.

use std::fmt::Write as _;
use std::io::Write;

use base64::Engine as _;
use keel_client::proto as p;

/// Output format (`-w`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Simple,
    Json,
    Table,
}

/// Printer state: format and the `--hex` / `--print-value-only` options.
pub struct Printer {
    pub format: Format,
    pub hex: bool,
    pub value_only: bool,
    pub out: std::io::StdoutLock<'static>,
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// Go's JSON string escaping (HTML-safe, as `json.Marshal` does).
pub fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            '<' => o.push_str("\\u003c"),
            '>' => o.push_str("\\u003e"),
            '&' => o.push_str("\\u0026"),
            '\u{2028}' => o.push_str("\\u2028"),
            '\u{2029}' => o.push_str("\\u2029"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// A JSON object under construction, with Go's `omitempty` helpers.
#[derive(Default)]
pub struct Obj(String);

impl Obj {
    fn raw(&mut self, k: &str, v: &str) -> &mut Self {
        if !self.0.is_empty() {
            self.0.push(',');
        }
        let _ = write!(self.0, "\"{k}\":{v}");
        self
    }
    fn int_oe(&mut self, k: &str, v: i128) -> &mut Self {
        if v != 0 {
            self.raw(k, &v.to_string());
        }
        self
    }
    fn int(&mut self, k: &str, v: i128) -> &mut Self {
        self.raw(k, &v.to_string())
    }
    fn bool_oe(&mut self, k: &str, v: bool) -> &mut Self {
        if v {
            self.raw(k, "true");
        }
        self
    }
    fn bytes_oe(&mut self, k: &str, v: &[u8]) -> &mut Self {
        if !v.is_empty() {
            self.raw(k, &json_str(&b64(v)));
        }
        self
    }
    fn str_oe(&mut self, k: &str, v: &str) -> &mut Self {
        if !v.is_empty() {
            self.raw(k, &json_str(v));
        }
        self
    }
    fn done(&self) -> String {
        format!("{{{}}}", self.0)
    }
}

fn header_fields(o: &mut Obj, h: &p::ResponseHeader) {
    o.int_oe("cluster_id", h.cluster_id as i128)
        .int_oe("member_id", h.member_id as i128)
        .int_oe("revision", h.revision as i128)
        .int_oe("raft_term", h.raft_term as i128);
}

pub fn header_json(h: &p::ResponseHeader) -> String {
    let mut o = Obj::default();
    header_fields(&mut o, h);
    o.done()
}

pub fn kv_json(kv: &p::KeyValue) -> String {
    let mut o = Obj::default();
    o.bytes_oe("key", &kv.key)
        .int_oe("create_revision", kv.create_revision as i128)
        .int_oe("mod_revision", kv.mod_revision as i128)
        .int_oe("version", kv.version as i128)
        .bytes_oe("value", &kv.value)
        .int_oe("lease", kv.lease as i128);
    o.done()
}

fn list(items: impl Iterator<Item = String>) -> String {
    format!("[{}]", items.collect::<Vec<_>>().join(","))
}

pub fn range_json(r: &p::RangeResponse) -> String {
    let mut o = Obj::default();
    o.raw("header", &header_json(&r.header));
    if !r.kvs.is_empty() {
        o.raw("kvs", &list(r.kvs.iter().map(kv_json)));
    }
    o.bool_oe("more", r.more).int_oe("count", r.count as i128);
    o.done()
}

pub fn put_json(r: &p::PutResponse) -> String {
    let mut o = Obj::default();
    o.raw("header", &header_json(&r.header));
    if let Some(kv) = &r.prev_kv {
        o.raw("prev_kv", &kv_json(kv));
    }
    o.done()
}

pub fn del_json(r: &p::DeleteRangeResponse) -> String {
    let mut o = Obj::default();
    o.raw("header", &header_json(&r.header))
        .int_oe("deleted", r.deleted as i128);
    if !r.prev_kvs.is_empty() {
        o.raw("prev_kvs", &list(r.prev_kvs.iter().map(kv_json)));
    }
    o.done()
}

pub fn txn_json(r: &p::TxnResponse) -> String {
    let mut o = Obj::default();
    o.raw("header", &header_json(&r.header))
        .bool_oe("succeeded", r.succeeded);
    if !r.responses.is_empty() {
        let items = r.responses.iter().map(|op| {
            let (name, body) = match op {
                p::ResponseOp::Range(x) => ("ResponseRange", range_json(x)),
                p::ResponseOp::Put(x) => ("ResponsePut", put_json(x)),
                p::ResponseOp::DeleteRange(x) => ("ResponseDeleteRange", del_json(x)),
                p::ResponseOp::Txn(x) => ("ResponseTxn", txn_json(x)),
            };
            format!("{{\"Response\":{{\"{name}\":{body}}}}}")
        });
        o.raw("responses", &list(items));
    }
    o.done()
}

pub fn event_json(e: &p::Event) -> String {
    let mut o = Obj::default();
    if e.event_type == p::EventType::Delete {
        o.int("type", 1);
    }
    o.raw("kv", &kv_json(&e.kv));
    if let Some(prev) = &e.prev_kv {
        o.raw("prev_kv", &kv_json(prev));
    }
    o.done()
}

pub fn member_json(m: &p::Member) -> String {
    let mut o = Obj::default();
    o.int_oe("ID", m.id as i128).str_oe("name", &m.name);
    if !m.peer_urls.is_empty() {
        o.raw("peerURLs", &list(m.peer_urls.iter().map(|s| json_str(s))));
    }
    if !m.client_urls.is_empty() {
        o.raw(
            "clientURLs",
            &list(m.client_urls.iter().map(|s| json_str(s))),
        );
    }
    o.bool_oe("isLearner", m.is_learner);
    o.done()
}

pub fn status_json(s: &p::StatusResponse) -> String {
    let mut o = Obj::default();
    o.raw("header", &header_json(&s.header))
        .str_oe("version", &s.version)
        .int_oe("dbSize", s.db_size as i128)
        .int_oe("leader", s.leader as i128)
        .int_oe("raftIndex", s.raft_index as i128)
        .int_oe("raftTerm", s.raft_term as i128)
        .int_oe("raftAppliedIndex", s.raft_applied_index as i128);
    if !s.errors.is_empty() {
        o.raw("errors", &list(s.errors.iter().map(|e| json_str(e))));
    }
    o.int_oe("dbSizeInUse", s.db_size_in_use as i128)
        .bool_oe("isLearner", s.is_learner);
    o.done()
}

fn alarm_name(a: p::AlarmType) -> &'static str {
    match a {
        p::AlarmType::None => "NONE",
        p::AlarmType::NoSpace => "NOSPACE",
        p::AlarmType::Corrupt => "CORRUPT",
    }
}

/// Go's `%q` for printable strings (escapes quotes and backslashes).
pub fn go_quote(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// go-humanize's `Bytes` (SI units).
pub fn humanize_bytes(s: u64) -> String {
    const SIZES: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if s < 10 {
        return format!("{s} B");
    }
    let e = ((s as f64).ln() / 1000f64.ln()).floor();
    let suffix = SIZES[e as usize];
    let val = ((s as f64) / 1000f64.powf(e) * 10.0 + 0.5).floor() / 10.0;
    if val < 10.0 {
        format!("{val:.1} {suffix}")
    } else {
        format!("{val:.0} {suffix}")
    }
}

/// Go's `time.Duration.String` for durations under a minute.
pub fn go_duration(d: std::time::Duration) -> String {
    let ns = d.as_nanos();
    let (whole, frac_digits, unit) = if ns < 1_000 {
        return format!("{ns}ns");
    } else if ns < 1_000_000 {
        (ns, 3, "µs")
    } else if ns < 1_000_000_000 {
        (ns, 6, "ms")
    } else {
        (ns, 9, "s")
    };
    let div = 10u128.pow(frac_digits);
    let int = whole / div;
    let frac = whole % div;
    if frac == 0 {
        format!("{int}{unit}")
    } else {
        let f = format!("{frac:0width$}", width = frac_digits as usize);
        format!("{int}.{}{unit}", f.trim_end_matches('0'))
    }
}

/// olekukonko/tablewriter's layout as etcdctl configures it (headers centred and upper-cased,
/// cells right-aligned).
pub fn table(hdr: &[&str], rows: &[Vec<String>]) -> String {
    let n = hdr.len();
    let mut w: Vec<usize> = hdr.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(n) {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let sep = {
        let mut s = String::from("+");
        for wi in &w {
            s.push_str(&"-".repeat(wi + 2));
            s.push('+');
        }
        s.push('\n');
        s
    };
    let mut out = sep.clone();
    out.push('|');
    for (i, h) in hdr.iter().enumerate() {
        let h = h.to_uppercase();
        let gap = w[i] - h.chars().count();
        let left = gap / 2;
        let _ = write!(
            out,
            " {}{}{} |",
            " ".repeat(left),
            h,
            " ".repeat(gap - left)
        );
    }
    out.push('\n');
    out.push_str(&sep);
    for r in rows {
        out.push('|');
        for (i, c) in r.iter().enumerate().take(n) {
            let gap = w[i] - c.chars().count();
            let _ = write!(out, " {}{} |", " ".repeat(gap), c);
        }
        out.push('\n');
    }
    out.push_str(&sep);
    out
}

impl Printer {
    fn line(&mut self, s: &str) {
        let _ = writeln!(self.out, "{s}");
    }

    fn bytes_str(&self, b: &[u8]) -> String {
        if self.hex {
            b.iter().map(|x| format!("\\x{x:02x}")).collect()
        } else {
            String::from_utf8_lossy(b).into_owned()
        }
    }

    fn kv(&mut self, kv: &p::KeyValue) {
        if !self.value_only {
            let k = self.bytes_str(&kv.key);
            self.line(&k);
        }
        let v = self.bytes_str(&kv.value);
        self.line(&v);
    }

    pub fn unsupported(&self) -> ! {
        let name = match self.format {
            Format::Table => "table",
            Format::Json => "json",
            Format::Simple => "simple",
        };
        crate::exit_error(
            crate::EXIT_BAD_FEATURE,
            &format!("{name} not supported as output format"),
        )
    }

    pub fn get(&mut self, r: &p::RangeResponse, count_only: bool) {
        match self.format {
            Format::Simple => {
                if count_only {
                    self.line(&r.count.to_string());
                    return;
                }
                for kv in &r.kvs {
                    self.kv(kv);
                }
            }
            Format::Json => self.line(&range_json(r)),
            Format::Table => self.unsupported(),
        }
    }

    pub fn put(&mut self, r: &p::PutResponse) {
        match self.format {
            Format::Simple => {
                self.line("OK");
                if let Some(kv) = &r.prev_kv {
                    self.kv(kv);
                }
            }
            Format::Json => self.line(&put_json(r)),
            Format::Table => self.unsupported(),
        }
    }

    pub fn del(&mut self, r: &p::DeleteRangeResponse) {
        match self.format {
            Format::Simple => {
                self.line(&r.deleted.to_string());
                for kv in &r.prev_kvs {
                    self.kv(kv);
                }
            }
            Format::Json => self.line(&del_json(r)),
            Format::Table => self.unsupported(),
        }
    }

    pub fn txn(&mut self, r: &p::TxnResponse) {
        match self.format {
            Format::Simple => {
                self.line(if r.succeeded { "SUCCESS" } else { "FAILURE" });
                for op in &r.responses {
                    self.line("");
                    match op {
                        p::ResponseOp::DeleteRange(x) => self.del(x),
                        p::ResponseOp::Put(x) => self.put(x),
                        p::ResponseOp::Range(x) => self.get(x, false),
                        p::ResponseOp::Txn(_) => self.line("unexpected response"),
                    }
                }
            }
            Format::Json => self.line(&txn_json(r)),
            Format::Table => self.unsupported(),
        }
    }

    pub fn watch(&mut self, w: &p::WatchResponse) {
        match self.format {
            Format::Simple => {
                for e in &w.events {
                    self.line(match e.event_type {
                        p::EventType::Put => "PUT",
                        p::EventType::Delete => "DELETE",
                    });
                    if let Some(prev) = &e.prev_kv {
                        self.kv(prev);
                    }
                    self.kv(&e.kv);
                }
            }
            Format::Json => {
                let events = if w.events.is_empty() {
                    "null".to_string()
                } else {
                    list(w.events.iter().map(event_json))
                };
                let s = format!(
                    "{{\"Header\":{},\"Events\":{},\"CompactRevision\":{},\"Canceled\":{},\"Created\":{}}}",
                    header_json(&w.header),
                    events,
                    w.compact_revision,
                    w.canceled,
                    w.created
                );
                self.line(&s);
            }
            Format::Table => self.unsupported(),
        }
        let _ = self.out.flush();
    }

    pub fn grant(&mut self, r: &p::LeaseGrantResponse) {
        match self.format {
            Format::Simple => {
                self.line(&format!("lease {:016x} granted with TTL({}s)", r.id, r.ttl))
            }
            Format::Json => {
                let mut o = Obj::default();
                header_fields(&mut o, &r.header);
                o.int("ID", r.id as i128)
                    .int("TTL", r.ttl as i128)
                    .raw("Error", &json_str(&r.error));
                self.line(&o.done());
            }
            Format::Table => self.unsupported(),
        }
    }

    pub fn revoke(&mut self, id: i64, r: &p::LeaseRevokeResponse) {
        match self.format {
            Format::Simple => self.line(&format!("lease {id:016x} revoked")),
            Format::Json => {
                let s = format!("{{\"header\":{}}}", header_json(&r.header));
                self.line(&s)
            }
            Format::Table => self.unsupported(),
        }
    }

    pub fn keep_alive(&mut self, r: &p::LeaseKeepAliveResponse) {
        match self.format {
            Format::Simple => self.line(&format!(
                "lease {:016x} keepalived with TTL({})",
                r.id, r.ttl
            )),
            Format::Json => {
                let mut o = Obj::default();
                header_fields(&mut o, &r.header);
                o.int("ID", r.id as i128).int("TTL", r.ttl as i128);
                self.line(&o.done());
            }
            Format::Table => self.unsupported(),
        }
        let _ = self.out.flush();
    }

    pub fn time_to_live(&mut self, r: &p::LeaseTimeToLiveResponse, keys: bool) {
        match self.format {
            Format::Simple => {
                if r.granted_ttl == 0 && r.ttl == -1 {
                    self.line(&format!("lease {:016x} already expired", r.id));
                    return;
                }
                let mut txt = format!(
                    "lease {:016x} granted with TTL({}s), remaining({}s)",
                    r.id, r.granted_ttl, r.ttl
                );
                if keys {
                    let ks: Vec<String> = r
                        .keys
                        .iter()
                        .map(|k| String::from_utf8_lossy(k).into_owned())
                        .collect();
                    let _ = write!(txt, ", attached keys([{}])", ks.join(" "));
                }
                self.line(&txt);
            }
            Format::Json => {
                let mut o = Obj::default();
                header_fields(&mut o, &r.header);
                o.int("id", r.id as i128)
                    .int("ttl", r.ttl as i128)
                    .int("granted-ttl", r.granted_ttl as i128);
                if r.keys.is_empty() {
                    o.raw("keys", "null");
                } else {
                    o.raw("keys", &list(r.keys.iter().map(|k| json_str(&b64(k)))));
                }
                self.line(&o.done());
            }
            Format::Table => self.unsupported(),
        }
    }

    pub fn leases(&mut self, r: &p::LeaseLeasesResponse) {
        match self.format {
            Format::Simple => {
                self.line(&format!("found {} leases", r.leases.len()));
                for l in &r.leases {
                    self.line(&format!("{:016x}", l.id));
                }
            }
            Format::Json => {
                let mut o = Obj::default();
                header_fields(&mut o, &r.header);
                o.raw(
                    "leases",
                    &list(r.leases.iter().map(|l| format!("{{\"id\":{}}}", l.id))),
                );
                self.line(&o.done());
            }
            Format::Table => self.unsupported(),
        }
    }

    pub fn alarms(&mut self, r: &p::AlarmResponse) {
        match self.format {
            Format::Simple => {
                for a in &r.alarms {
                    self.line(&format!(
                        "memberID:{} alarm:{} ",
                        a.member_id,
                        alarm_name(a.alarm)
                    ));
                }
            }
            Format::Json => {
                let mut o = Obj::default();
                // etcd 3.4 sends no header with alarm responses; etcdctl omits the nil field.
                if r.header != p::ResponseHeader::default() {
                    o.raw("header", &header_json(&r.header));
                }
                if !r.alarms.is_empty() {
                    let items = r.alarms.iter().map(|a| {
                        let mut m = Obj::default();
                        m.int_oe("memberID", a.member_id as i128)
                            .int_oe("alarm", a.alarm as i128);
                        m.done()
                    });
                    o.raw("alarms", &list(items));
                }
                self.line(&o.done());
            }
            Format::Table => self.unsupported(),
        }
    }

    pub fn member_list(&mut self, r: &p::MemberListResponse) {
        let rows: Vec<Vec<String>> = r
            .members
            .iter()
            .map(|m| {
                vec![
                    format!("{:x}", m.id),
                    if m.name.is_empty() {
                        "unstarted"
                    } else {
                        "started"
                    }
                    .to_string(),
                    m.name.clone(),
                    m.peer_urls.join(","),
                    m.client_urls.join(","),
                    m.is_learner.to_string(),
                ]
            })
            .collect();
        match self.format {
            Format::Simple => {
                for row in rows {
                    self.line(&row.join(", "));
                }
            }
            Format::Json => {
                let mut o = Obj::default();
                o.raw("header", &header_json(&r.header));
                if !r.members.is_empty() {
                    o.raw("members", &list(r.members.iter().map(member_json)));
                }
                self.line(&o.done());
            }
            Format::Table => {
                let t = table(
                    &[
                        "ID",
                        "Status",
                        "Name",
                        "Peer Addrs",
                        "Client Addrs",
                        "Is Learner",
                    ],
                    &rows,
                );
                let _ = write!(self.out, "{t}");
            }
        }
    }

    /// `member add`: etcdctl's confirmation and the environment for the new member.
    pub fn member_add(&mut self, r: &p::MemberAddResponse, name: &str, peer_urls: &str) {
        let new_id = r.member.as_ref().map_or(0, |m| m.id);
        match self.format {
            Format::Simple => {
                self.line(&format!(
                    "Member {:16x} added to cluster {:16x}",
                    new_id, r.header.cluster_id
                ));
                let mut conf = Vec::new();
                for m in &r.members {
                    for u in &m.peer_urls {
                        let n = if m.id == new_id { name } else { &m.name };
                        conf.push(format!("{n}={u}"));
                    }
                }
                self.line("");
                self.line(&format!("ETCD_NAME={}", go_quote(name)));
                self.line(&format!(
                    "ETCD_INITIAL_CLUSTER={}",
                    go_quote(&conf.join(","))
                ));
                self.line(&format!(
                    "ETCD_INITIAL_ADVERTISE_PEER_URLS={}",
                    go_quote(peer_urls)
                ));
                self.line("ETCD_INITIAL_CLUSTER_STATE=\"existing\"");
            }
            Format::Json => {
                let mut o = Obj::default();
                o.raw("header", &header_json(&r.header));
                if let Some(m) = &r.member {
                    o.raw("member", &member_json(m));
                }
                if !r.members.is_empty() {
                    o.raw("members", &list(r.members.iter().map(member_json)));
                }
                self.line(&o.done());
            }
            Format::Table => self.unsupported(),
        }
    }

    /// `member remove/update/promote`.
    pub fn member_changed(
        &mut self,
        verb: &str,
        id: u64,
        header: &p::ResponseHeader,
        members: &[p::Member],
    ) {
        match self.format {
            Format::Simple => self.line(&format!(
                "Member {:16x} {verb} cluster {:16x}",
                id, header.cluster_id
            )),
            Format::Json => {
                let mut o = Obj::default();
                o.raw("header", &header_json(header));
                if !members.is_empty() {
                    o.raw("members", &list(members.iter().map(member_json)));
                }
                self.line(&o.done());
            }
            Format::Table => self.unsupported(),
        }
    }

    pub fn endpoint_status(&mut self, list_: &[(String, p::StatusResponse)]) {
        let rows: Vec<Vec<String>> = list_
            .iter()
            .map(|(ep, s)| {
                vec![
                    ep.clone(),
                    format!("{:x}", s.header.member_id),
                    s.version.clone(),
                    humanize_bytes(s.db_size as u64),
                    (s.leader == s.header.member_id).to_string(),
                    s.is_learner.to_string(),
                    s.raft_term.to_string(),
                    s.raft_index.to_string(),
                    s.raft_applied_index.to_string(),
                    s.errors.join(", "),
                ]
            })
            .collect();
        match self.format {
            Format::Simple => {
                for row in rows {
                    self.line(&row.join(", "));
                }
            }
            Format::Json => {
                let items = list_.iter().map(|(ep, s)| {
                    format!(
                        "{{\"Endpoint\":{},\"Status\":{}}}",
                        json_str(ep),
                        status_json(s)
                    )
                });
                let s = list(items);
                self.line(&s);
            }
            Format::Table => {
                let t = table(
                    &[
                        "endpoint",
                        "ID",
                        "version",
                        "db size",
                        "is leader",
                        "is learner",
                        "raft term",
                        "raft index",
                        "raft applied index",
                        "errors",
                    ],
                    &rows,
                );
                let _ = write!(self.out, "{t}");
            }
        }
    }

    /// (endpoint, healthy, took, error)
    pub fn endpoint_health(&mut self, hs: &[(String, bool, String, String)]) {
        match self.format {
            Format::Simple => {
                for (ep, ok, took, err) in hs {
                    if *ok {
                        eprintln!(
                            "{ep} is healthy: successfully committed proposal: took = {took}"
                        );
                    } else {
                        eprintln!("{ep} is unhealthy: failed to commit proposal: {err}");
                    }
                }
            }
            Format::Json => {
                let items = hs.iter().map(|(ep, ok, took, err)| {
                    let mut o = Obj::default();
                    o.raw("endpoint", &json_str(ep))
                        .raw("health", if *ok { "true" } else { "false" })
                        .raw("took", &json_str(took))
                        .str_oe("error", err);
                    o.done()
                });
                let s = list(items);
                self.line(&s);
            }
            Format::Table => {
                let rows: Vec<Vec<String>> = hs
                    .iter()
                    .map(|(ep, ok, took, err)| {
                        vec![ep.clone(), ok.to_string(), took.clone(), err.clone()]
                    })
                    .collect();
                let t = table(&["endpoint", "health", "took", "error"], &rows);
                let _ = write!(self.out, "{t}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humanize_matches_go_humanize() {
        assert_eq!(humanize_bytes(24576), "25 kB");
        assert_eq!(humanize_bytes(5), "5 B");
        assert_eq!(humanize_bytes(1500), "1.5 kB");
        assert_eq!(humanize_bytes(20_000_000), "20 MB");
    }

    #[test]
    fn go_duration_strings() {
        use std::time::Duration;
        assert_eq!(go_duration(Duration::from_nanos(4_643_310)), "4.64331ms");
        assert_eq!(go_duration(Duration::from_micros(1500)), "1.5ms");
        assert_eq!(go_duration(Duration::from_nanos(900)), "900ns");
        assert_eq!(go_duration(Duration::from_millis(2000)), "2s");
    }

    #[test]
    fn json_strings_escape_like_go() {
        assert_eq!(json_str("a<b>&\"\n"), "\"a\\u003cb\\u003e\\u0026\\\"\\n\"");
    }

    #[test]
    fn table_layout() {
        let t = table(
            &["ID", "Status"],
            &[vec!["8e9e05c52164694d".into(), "started".into()]],
        );
        assert_eq!(
            t,
            "+------------------+---------+\n\
             |        ID        | STATUS  |\n\
             +------------------+---------+\n\
             | 8e9e05c52164694d | started |\n\
             +------------------+---------+\n"
        );
    }
}
