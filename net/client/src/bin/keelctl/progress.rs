//! Progress of long operations (`snapshot save`, `defrag`, `check perf`), shown on stderr only
//! when stdout is a terminal, so output to a pipe stays byte-identical to etcdctl's. Each
//! update rewrites one line (`\r` + erase to end of line); [`Progress::finish`] clears it before
//! the command prints its result on stdout.

use std::io::{IsTerminal, Write};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::AsyncWrite;

use crate::out::{go_duration, humanize_bytes};

/// `\r` + ANSI "erase to end of line": rewrites the current terminal line.
const REWRITE: &str = "\r\x1b[K";

/// The line shown while a snapshot downloads.
pub fn snapshot_line(received: u64, elapsed: Duration) -> String {
    format!(
        "{REWRITE}snapshot: received {} ({received} bytes) in {}",
        humanize_bytes(received),
        go_duration(round(elapsed))
    )
}

/// The line shown while member `i` of `n` (endpoint `ep`) defragments.
pub fn defrag_line(ep: &str, i: usize, n: usize, elapsed: Duration) -> String {
    format!(
        "{REWRITE}defragmenting member[{ep}] ({}/{n}), {} elapsed",
        i + 1,
        go_duration(round(elapsed))
    )
}

/// The line shown during `check perf`: seconds done of the run, writes completed so far.
pub fn perf_line(elapsed: Duration, total: Duration, writes: u64) -> String {
    let done = elapsed.min(total).as_secs();
    let pct = if total.is_zero() {
        100.0
    } else {
        elapsed.min(total).as_secs_f64() * 100.0 / total.as_secs_f64()
    };
    format!(
        "{REWRITE}check perf: {done}/{}s {pct:.0}%, {writes} writes",
        total.as_secs()
    )
}

/// Milliseconds are enough on a progress line.
fn round(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

/// A progress line on stderr, updated at most every 100 ms; inert when stdout is not a terminal.
pub struct Progress {
    enabled: bool,
    started: Instant,
    last: Option<Instant>,
}

impl Progress {
    /// Enabled only when stdout is a terminal.
    pub fn for_stdout() -> Progress {
        Progress::new(std::io::stdout().is_terminal())
    }

    /// A progress line that shows only when `enabled`.
    pub fn new(enabled: bool) -> Progress {
        Progress {
            enabled,
            started: Instant::now(),
            last: None,
        }
    }

    /// Time since the operation started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Shows `line()` unless the last update was under 100 ms ago.
    pub fn update(&mut self, line: impl FnOnce(Duration) -> String) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now - t < Duration::from_millis(100))
        {
            return;
        }
        self.last = Some(now);
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "{}", line(self.elapsed()));
        let _ = err.flush();
    }

    /// Clears the progress line (if one was shown).
    pub fn finish(&mut self) {
        if self.enabled && self.last.is_some() {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "{REWRITE}");
            let _ = err.flush();
        }
        self.last = None;
    }
}

/// Wraps a writer, counting the bytes through it and showing them as snapshot progress.
pub struct CountingWriter<W> {
    inner: W,
    count: u64,
    progress: Progress,
}

impl<W> CountingWriter<W> {
    /// Counts writes into `inner`, reporting through `progress`.
    pub fn new(inner: W, progress: Progress) -> Self {
        CountingWriter {
            inner,
            count: 0,
            progress,
        }
    }

    /// Bytes written so far.
    #[cfg(test)]
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Clears the progress line and gives the writer back.
    pub fn finish(mut self) -> W {
        self.progress.finish();
        self.inner
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for CountingWriter<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            this.count += *n as u64;
            let count = this.count;
            this.progress.update(|t| snapshot_line(count, t));
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines() {
        assert_eq!(
            snapshot_line(1_500_000, Duration::from_micros(2_345_678)),
            "\r\x1b[Ksnapshot: received 1.5 MB (1500000 bytes) in 2.345s"
        );
        assert_eq!(
            defrag_line("127.0.0.1:2379", 0, 3, Duration::from_millis(1200)),
            "\r\x1b[Kdefragmenting member[127.0.0.1:2379] (1/3), 1.2s elapsed"
        );
        assert_eq!(
            perf_line(Duration::from_secs(15), Duration::from_secs(60), 2250),
            "\r\x1b[Kcheck perf: 15/60s 25%, 2250 writes"
        );
        assert_eq!(
            perf_line(Duration::from_secs(61), Duration::from_secs(60), 9000),
            "\r\x1b[Kcheck perf: 60/60s 100%, 9000 writes"
        );
    }

    #[test]
    fn disabled_progress_shows_nothing_and_counting_still_counts() {
        let mut p = Progress::new(false);
        let mut called = false;
        p.update(|_| {
            called = true;
            String::new()
        });
        assert!(
            !called,
            "no line is even formatted when stdout is not a terminal"
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut w = CountingWriter::new(Vec::new(), Progress::new(false));
        rt.block_on(async {
            use tokio::io::AsyncWriteExt;
            w.write_all(b"hello").await.unwrap();
            w.write_all(b" world").await.unwrap();
        });
        assert_eq!(w.count(), 11);
        assert_eq!(w.finish(), b"hello world");
    }
}
