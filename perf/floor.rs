//! The machine's latency floor for a single-client put, measured next to a comparison run
//! (perf/compare.sh builds this file with plain `rustc -O`: std only, no cargo, no crates).
//!
//!   floor <dir> [samples]     (default 1000 samples of each)
//!
//! Prints one JSON object:
//! - `loopback_rtt_p50_s`: one 64-byte TCP ping-pong over 127.0.0.1 (TCP_NODELAY), both ends
//!   in this process on two threads;
//! - `dsync_write_p50_s`: one 4 KiB `pwrite` to a file in `<dir>` opened O_DIRECT | O_DSYNC
//!   (what keel's WAL does), over blocks that were written and synced before;
//!   `dsync_mode` says `o_direct_dsync`, or `o_dsync` where the filesystem refuses O_DIRECT;
//! - `fdatasync_write_p50_s`: one buffered 4 KiB `pwrite` + `fdatasync` on the same file;
//! - `dsync3_write_p50_s`: the same O_DIRECT | O_DSYNC 4 KiB writes from three threads at once,
//!   each on its own file (what three members on one machine do: their WALs share the disk);
//! - `dsync_idle_write_p50_s`: the same write, one at a time after 1 ms with no I/O (at most 300
//!   samples). A 1 conn / 1 client put's WAL write comes after the rest of the put's cycle, not
//!   right after the previous write, and on the 2-vCPU development VM such a write took ~1.4x a
//!   back-to-back one (tuning.md, "WAL durability");
//! - p10 and p99 of each as well.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::time::Instant;

const BLOCK: usize = 4096;
/// Blocks in the scratch file; writes cycle over them.
const BLOCKS: usize = 256;

#[cfg(target_arch = "x86_64")]
const O_DIRECT: i32 = 0o40000;
#[cfg(any(target_arch = "aarch64", target_arch = "arm"))]
const O_DIRECT: i32 = 0o200000;
const O_DSYNC: i32 = 0o10000;

/// A zeroed, 4 KiB-aligned buffer (O_DIRECT wants aligned memory).
struct Aligned {
    ptr: *mut u8,
    layout: Layout,
}

impl Aligned {
    fn new(len: usize) -> Self {
        let layout = Layout::from_size_align(len, BLOCK).expect("valid layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        assert!(!ptr.is_null(), "out of memory");
        Self { ptr, layout }
    }

    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: ptr points at layout.size() initialised bytes owned by self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.layout.size()) }
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.ptr, self.layout) }
    }
}

/// (p10, p50, p99) of `samples` in seconds.
fn quantiles(mut samples: Vec<f64>) -> (f64, f64, f64) {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.10), at(0.50), at(0.99))
}

fn loopback(n: usize) -> std::io::Result<Vec<f64>> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut buf = [0u8; 64];
        loop {
            match s.read_exact(&mut buf) {
                Ok(()) => s.write_all(&buf)?,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    });
    let mut c = TcpStream::connect(addr)?;
    c.set_nodelay(true)?;
    let mut buf = [7u8; 64];
    let mut out = Vec::with_capacity(n);
    // A few warm-up round trips, not counted.
    for i in 0..n + 50 {
        let t = Instant::now();
        c.write_all(&buf)?;
        c.read_exact(&mut buf)?;
        if i >= 50 {
            out.push(t.elapsed().as_secs_f64());
        }
    }
    drop(c);
    echo.join().expect("echo thread panicked")?;
    Ok(out)
}

/// Writes `n` 4 KiB blocks with `file`, cycling over the scratch file's blocks; `sync` after
/// each write when given.
fn writes(file: &File, n: usize, sync: bool) -> std::io::Result<Vec<f64>> {
    let mut buf = Aligned::new(BLOCK);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        buf.bytes()[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let off = ((i % BLOCKS) * BLOCK) as u64;
        let t = Instant::now();
        file.write_all_at(buf.bytes(), off)?;
        if sync {
            file.sync_data()?;
        }
        out.push(t.elapsed().as_secs_f64());
    }
    Ok(out)
}

/// Like [`writes`] without sync, sleeping `idle` before each write, so every write finds the
/// disk idle.
fn idle_writes(file: &File, n: usize, idle: std::time::Duration) -> std::io::Result<Vec<f64>> {
    let mut buf = Aligned::new(BLOCK);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        buf.bytes()[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let off = ((i % BLOCKS) * BLOCK) as u64;
        std::thread::sleep(idle);
        let t = Instant::now();
        file.write_all_at(buf.bytes(), off)?;
        out.push(t.elapsed().as_secs_f64());
    }
    Ok(out)
}

/// Creates a scratch file written and synced once, so the timed writes overwrite allocated
/// blocks (as a WAL does in its preallocated segments).
fn scratch(path: &Path) -> std::io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(&vec![0u8; BLOCK * BLOCKS])?;
    f.sync_all()
}

/// `threads` writers at once, each on its own scratch file opened with `flags`,
/// `n` writes each; all their samples together.
fn concurrent_writes(
    dir: &Path,
    threads: usize,
    n: usize,
    flags: i32,
) -> std::io::Result<Vec<f64>> {
    let mut paths = Vec::new();
    for t in 0..threads {
        let path = dir.join(format!("floor-scratch-{t}"));
        scratch(&path)?;
        paths.push(path);
    }
    let start = std::sync::Arc::new(std::sync::Barrier::new(threads));
    let handles: Vec<_> = paths
        .iter()
        .map(|p| {
            let (p, start) = (p.clone(), start.clone());
            std::thread::spawn(move || -> std::io::Result<Vec<f64>> {
                let f = OpenOptions::new()
                    .write(true)
                    .custom_flags(flags)
                    .open(&p)?;
                start.wait();
                writes(&f, n, false)
            })
        })
        .collect();
    let mut out = Vec::new();
    for h in handles {
        out.extend(h.join().expect("writer thread panicked")?);
    }
    for p in &paths {
        std::fs::remove_file(p)?;
    }
    Ok(out)
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 2 {
        eprintln!("usage: floor <dir> [samples]");
        std::process::exit(2);
    }
    let dir = Path::new(&args[1]);
    let n: usize = args
        .get(2)
        .map_or(1000, |s| s.parse().expect("samples: a number"));
    let path = dir.join("floor-scratch");
    scratch(&path)?;
    let (dsync_mode, direct, flags) = match OpenOptions::new()
        .write(true)
        .custom_flags(O_DIRECT | O_DSYNC)
        .open(&path)
    {
        Ok(f) => ("o_direct_dsync", f, O_DIRECT | O_DSYNC),
        Err(_) => (
            "o_dsync",
            OpenOptions::new()
                .write(true)
                .custom_flags(O_DSYNC)
                .open(&path)?,
            O_DSYNC,
        ),
    };
    let dsync = quantiles(writes(&direct, n, false)?);
    let idle = quantiles(idle_writes(
        &direct,
        n.min(300),
        std::time::Duration::from_millis(1),
    )?);
    drop(direct);
    let plain = OpenOptions::new().write(true).open(&path)?;
    let fdatasync = quantiles(writes(&plain, n, true)?);
    drop(plain);
    std::fs::remove_file(&path)?;
    let dsync3 = quantiles(concurrent_writes(dir, 3, n, flags)?);
    let rtt = quantiles(loopback(n)?);
    println!(
        "{{\"samples\":{n},\"loopback_rtt_p10_s\":{},\"loopback_rtt_p50_s\":{},\
         \"loopback_rtt_p99_s\":{},\"dsync_mode\":\"{dsync_mode}\",\"dsync_write_p10_s\":{},\
         \"dsync_write_p50_s\":{},\"dsync_write_p99_s\":{},\"fdatasync_write_p10_s\":{},\
         \"fdatasync_write_p50_s\":{},\"fdatasync_write_p99_s\":{},\"dsync3_write_p10_s\":{},\
         \"dsync3_write_p50_s\":{},\"dsync3_write_p99_s\":{},\"dsync_idle_write_p10_s\":{},\
         \"dsync_idle_write_p50_s\":{},\"dsync_idle_write_p99_s\":{}}}",
        rtt.0,
        rtt.1,
        rtt.2,
        dsync.0,
        dsync.1,
        dsync.2,
        fdatasync.0,
        fdatasync.1,
        fdatasync.2,
        dsync3.0,
        dsync3.1,
        dsync3.2,
        idle.0,
        idle.1,
        idle.2
    );
    Ok(())
}
