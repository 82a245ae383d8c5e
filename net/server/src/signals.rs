//! SIGTERM / SIGINT handling for a clean shutdown: the signals are blocked in every thread
//! (call [`block_shutdown_signals`] first, before any executor starts, so the threads inherit the
//! mask) and one dedicated thread waits for them with `sigwait`, then runs a callback. No code
//! runs inside a signal handler.

use std::io;

fn shutdown_set() -> libc::sigset_t {
    // SAFETY: sigset_t is a plain C struct for which all-zero bytes are a valid value; it is
    // initialised by sigemptyset right after.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable sigset_t; SIGTERM and SIGINT are valid signal numbers.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
    }
    set
}

/// Blocks SIGTERM and SIGINT in the calling thread; threads spawned afterwards inherit it.
pub fn block_shutdown_signals() -> io::Result<()> {
    let set = shutdown_set();
    // SAFETY: `set` is initialised; a null old-set pointer is allowed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// Starts a thread that waits for SIGTERM or SIGINT and then calls `on_signal` with the signal
/// number (once). [`block_shutdown_signals`] must have run first in the main thread.
pub fn on_shutdown_signal(on_signal: impl FnOnce(i32) + Send + 'static) -> io::Result<()> {
    std::thread::Builder::new()
        .name("keel-signals".into())
        .spawn(move || {
            let set = shutdown_set();
            let mut sig: libc::c_int = 0;
            // SAFETY: `set` is initialised and `sig` is a valid place for the result.
            let rc = unsafe { libc::sigwait(&set, &mut sig) };
            if rc == 0 {
                on_signal(sig);
            }
        })?;
    Ok(())
}
