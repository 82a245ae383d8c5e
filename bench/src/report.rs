//! Latency recording and the result report.
//!
//! Owns [`Recorder`] (one per client task: an HDR histogram of latencies plus exact sums and the
//! error counts), [`Report`] (recorders merged after a run, with the run's wall time) and the two
//! output forms: the text summary in the shape of etcd's benchmark tool (Summary, response time
//! histogram, latency distribution, error distribution) and a one-object JSON form (`--json`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

/// The percentiles printed under "Latency distribution", as etcd's tool prints them.
pub const PERCENTILES: [f64; 8] = [10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9];

/// Number of equal-width buckets in the response time histogram (etcd's tool uses 10 + 1).
const HISTOGRAM_BUCKETS: usize = 10;

/// Latencies and errors seen by one client task (merged into a [`Report`] at the end).
#[derive(Clone)]
pub struct Recorder {
    hist: Histogram<u64>,
    /// Exact sum of latencies in nanoseconds (the HDR histogram's mean is bucketed).
    sum_ns: u128,
    /// Sum of squared latencies in seconds², for the exact standard deviation.
    sum_sq_s: f64,
    min_ns: u64,
    max_ns: u64,
    errors: BTreeMap<String, u64>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// An empty recorder: nanosecond latencies, 3 significant digits, auto-resizing range.
    pub fn new() -> Self {
        let mut hist = Histogram::new(3).expect("3 significant digits is a valid HDR precision");
        hist.auto(true);
        Self {
            hist,
            sum_ns: 0,
            sum_sq_s: 0.0,
            min_ns: u64::MAX,
            max_ns: 0,
            errors: BTreeMap::new(),
        }
    }

    /// Records one successful request that took `latency`.
    #[inline]
    pub fn record(&mut self, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX).max(1);
        // With auto-resize on, recording only fails for values beyond u64's range: none here.
        let _ = self.hist.record(ns);
        self.sum_ns += u128::from(ns);
        let s = ns as f64 / 1e9;
        self.sum_sq_s += s * s;
        self.min_ns = self.min_ns.min(ns);
        self.max_ns = self.max_ns.max(ns);
    }

    /// Records one failed request (its latency is not recorded, as in etcd's tool).
    pub fn record_error(&mut self, message: &str) {
        *self.errors.entry(message.to_owned()).or_insert(0) += 1;
    }

    /// Number of successful requests recorded.
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// Number of failed requests recorded.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Adds `other`'s samples and errors to this recorder.
    pub fn merge(&mut self, other: &Recorder) {
        // Both histograms auto-resize, so adding cannot run out of range.
        let _ = self.hist.add(&other.hist);
        self.sum_ns += other.sum_ns;
        self.sum_sq_s += other.sum_sq_s;
        self.min_ns = self.min_ns.min(other.min_ns);
        self.max_ns = self.max_ns.max(other.max_ns);
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_insert(0) += v;
        }
    }
}

/// The merged result of one run (or one class of requests of a run, e.g. txn-mixed's reads).
pub struct Report {
    /// What was measured, e.g. "put" or "txn-mixed-read".
    pub name: String,
    /// Wall time of the whole run, from the first request to the last response.
    pub total: Duration,
    /// Every client's samples merged.
    pub rec: Recorder,
}

/// Summary statistics of a [`Report`], in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    /// Successful requests.
    pub count: u64,
    /// Failed requests.
    pub errors: u64,
    /// Wall time of the run.
    pub total_s: f64,
    /// Slowest request.
    pub slowest_s: f64,
    /// Fastest request.
    pub fastest_s: f64,
    /// Mean latency (exact).
    pub average_s: f64,
    /// Population standard deviation of the latency (exact).
    pub stddev_s: f64,
    /// Successful requests per second of wall time.
    pub rps: f64,
    /// (percentile, latency in seconds) for each of [`PERCENTILES`].
    pub percentiles: Vec<(f64, f64)>,
    /// (bucket upper bound in seconds, count): equal-width buckets from fastest to slowest.
    pub histogram: Vec<(f64, u64)>,
}

impl Report {
    /// Computes the summary statistics.
    pub fn stats(&self) -> Stats {
        let r = &self.rec;
        let count = r.count();
        let total_s = self.total.as_secs_f64();
        if count == 0 {
            return Stats {
                count,
                errors: r.error_count(),
                total_s,
                slowest_s: 0.0,
                fastest_s: 0.0,
                average_s: 0.0,
                stddev_s: 0.0,
                rps: 0.0,
                percentiles: Vec::new(),
                histogram: Vec::new(),
            };
        }
        let n = count as f64;
        let average_s = r.sum_ns as f64 / 1e9 / n;
        let variance = (r.sum_sq_s / n - average_s * average_s).max(0.0);
        let fastest_s = r.min_ns as f64 / 1e9;
        let slowest_s = r.max_ns as f64 / 1e9;
        let percentiles = PERCENTILES
            .iter()
            .map(|&p| (p, r.hist.value_at_quantile(p / 100.0) as f64 / 1e9))
            .collect();
        Stats {
            count,
            errors: r.error_count(),
            total_s,
            slowest_s,
            fastest_s,
            average_s,
            stddev_s: variance.sqrt(),
            rps: if total_s > 0.0 { n / total_s } else { 0.0 },
            percentiles,
            histogram: self.buckets(),
        }
    }

    /// Equal-width buckets between the fastest and the slowest request, like etcd's tool:
    /// bucket `i` counts the samples at or below its bound and above the previous one.
    fn buckets(&self) -> Vec<(f64, u64)> {
        let r = &self.rec;
        let (lo, hi) = (r.min_ns, r.max_ns);
        let width = (hi - lo) as f64 / HISTOGRAM_BUCKETS as f64;
        let bounds: Vec<u64> = (0..=HISTOGRAM_BUCKETS)
            .map(|i| lo + (width * i as f64).round() as u64)
            .collect();
        let mut counts = vec![0u64; bounds.len()];
        for v in r.hist.iter_recorded() {
            // An HDR bucket stands for values within 0.1% of each other: take its lowest
            // value, clamped to the exact extremes so the fastest sample lands in bucket 0.
            let x = r
                .hist
                .lowest_equivalent(v.value_iterated_to())
                .clamp(lo, hi);
            let i = bounds.partition_point(|&b| b < x).min(bounds.len() - 1);
            counts[i] += v.count_since_last_iteration();
        }
        bounds.iter().map(|&b| b as f64 / 1e9).zip(counts).collect()
    }

    /// The text report in the shape of etcd's benchmark tool.
    pub fn to_text(&self) -> String {
        let s = self.stats();
        let mut o = String::new();
        let _ = writeln!(o, "\nSummary:");
        let _ = writeln!(o, "  Total:\t{:.4} secs.", s.total_s);
        let _ = writeln!(o, "  Slowest:\t{:.4} secs.", s.slowest_s);
        let _ = writeln!(o, "  Fastest:\t{:.4} secs.", s.fastest_s);
        let _ = writeln!(o, "  Average:\t{:.4} secs.", s.average_s);
        let _ = writeln!(o, "  Stddev:\t{:.4} secs.", s.stddev_s);
        let _ = writeln!(o, "  Requests/sec:\t{:.4}", s.rps);
        if !s.histogram.is_empty() {
            let _ = writeln!(o, "\nResponse time histogram:");
            let max = s.histogram.iter().map(|b| b.1).max().unwrap_or(0).max(1);
            for (bound, c) in &s.histogram {
                let bar = "∎".repeat(((*c * 40) / max) as usize);
                let _ = writeln!(o, "  {bound:.4} [{c}]\t|{bar}");
            }
            let _ = writeln!(o, "\nLatency distribution:");
            for (p, v) in &s.percentiles {
                let _ = writeln!(o, "  {p}% in {v:.4} secs.");
            }
        }
        if !self.rec.errors.is_empty() {
            let _ = writeln!(o, "\nError distribution:");
            for (msg, c) in &self.rec.errors {
                let _ = writeln!(o, "  [{c}]\t{msg}");
            }
        }
        o
    }

    /// The report as one JSON object (no trailing newline).
    pub fn to_json(&self) -> String {
        let s = self.stats();
        let mut o = String::new();
        let _ = write!(
            o,
            "{{\"name\":{},\"count\":{},\"errors\":{},\"total_s\":{},\"slowest_s\":{},\
             \"fastest_s\":{},\"average_s\":{},\"stddev_s\":{},\"requests_per_sec\":{}",
            json_str(&self.name),
            s.count,
            s.errors,
            s.total_s,
            s.slowest_s,
            s.fastest_s,
            s.average_s,
            s.stddev_s,
            s.rps
        );
        o.push_str(",\"percentiles\":{");
        for (i, (p, v)) in s.percentiles.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(o, "{sep}\"p{p}\":{v}");
        }
        o.push_str("},\"histogram\":[");
        for (i, (b, c)) in s.histogram.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(o, "{sep}{{\"le_s\":{b},\"count\":{c}}}");
        }
        o.push_str("],\"error_messages\":{");
        for (i, (m, c)) in self.rec.errors.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(o, "{sep}{}:{c}", json_str(m));
        }
        o.push_str("}}");
        o
    }
}

/// `s` as a JSON string literal.
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
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report_of(ms: impl IntoIterator<Item = u64>) -> Report {
        let mut rec = Recorder::new();
        for m in ms {
            rec.record(Duration::from_millis(m));
        }
        Report {
            name: "t".into(),
            total: Duration::from_secs(2),
            rec,
        }
    }

    #[test]
    fn stats_are_exact_where_they_can_be() {
        let s = report_of(1..=100).stats();
        assert_eq!(s.count, 100);
        assert!((s.average_s - 0.0505).abs() < 1e-12);
        assert!((s.fastest_s - 0.001).abs() < 1e-12);
        assert!((s.slowest_s - 0.100).abs() < 1e-12);
        assert!((s.rps - 50.0).abs() < 1e-9);
        // Population stddev of 1..=100 ms: sqrt((100² - 1) / 12) ms.
        assert!((s.stddev_s - (9999.0f64 / 12.0).sqrt() / 1000.0).abs() < 1e-9);
    }

    #[test]
    fn percentiles_are_within_hdr_precision() {
        let s = report_of(1..=1000).stats();
        let p: Vec<f64> = s.percentiles.iter().map(|x| x.1 * 1000.0).collect();
        for (got, want) in p
            .iter()
            .zip([100.0, 250.0, 500.0, 750.0, 900.0, 950.0, 990.0, 999.0])
        {
            assert!((got - want).abs() / want < 0.002, "{got} vs {want}");
        }
    }

    #[test]
    fn histogram_buckets_hold_every_sample() {
        let s = report_of([1, 1, 1, 5, 10, 10]).stats();
        assert_eq!(s.histogram.len(), HISTOGRAM_BUCKETS + 1);
        assert_eq!(s.histogram.iter().map(|b| b.1).sum::<u64>(), 6);
        assert_eq!(
            s.histogram[0].1, 3,
            "the fastest samples fall in the first bucket"
        );
        assert_eq!(
            s.histogram[HISTOGRAM_BUCKETS].1, 2,
            "the slowest in the last"
        );
    }

    #[test]
    fn merge_adds_samples_and_errors() {
        let mut a = report_of([1, 2]).rec;
        let mut b = report_of([3]).rec;
        a.record_error("boom");
        b.record_error("boom");
        b.record_error("other");
        a.merge(&b);
        assert_eq!(a.count(), 3);
        assert_eq!(a.error_count(), 3);
        let r = Report {
            name: "m".into(),
            total: Duration::from_secs(1),
            rec: a,
        };
        assert!(r.to_text().contains("[2]\tboom"));
        assert!(r
            .to_json()
            .contains("\"error_messages\":{\"boom\":2,\"other\":1}"));
    }

    #[test]
    fn empty_report_has_no_histogram() {
        let r = report_of([]);
        assert_eq!(r.stats().count, 0);
        assert!(!r.to_text().contains("histogram"));
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_str("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\u0001\"");
    }
}
