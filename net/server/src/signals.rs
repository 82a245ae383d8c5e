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

/// Starts a thread that waits for SIGTERM or SIGINT and calls `on_signal` with the first
/// signal's number (start a clean stop), then `on_again` with the second's (a clean stop that
/// takes too long can be cut short: everything acknowledged is already in the WAL, so stopping
/// at any point is as safe as a crash). [`block_shutdown_signals`] must have run first in the
/// main thread.
pub fn on_shutdown_signal(
    on_signal: impl FnOnce(i32) + Send + 'static,
    on_again: impl FnOnce(i32) + Send + 'static,
) -> io::Result<()> {
    std::thread::Builder::new()
        .name("keel-signals".into())
        .spawn(move || {
            let set = shutdown_set();
            serve(
                || {
                    let mut sig: libc::c_int = 0;
                    // SAFETY: `set` is initialised and `sig` is a valid place for the result.
                    let rc = unsafe { libc::sigwait(&set, &mut sig) };
                    (rc == 0).then_some(sig)
                },
                on_signal,
                on_again,
            )
        })?;
    Ok(())
}

/// The signal thread's logic over a source of signals (`None`: waiting failed).
fn serve(mut next: impl FnMut() -> Option<i32>, first: impl FnOnce(i32), again: impl FnOnce(i32)) {
    let Some(sig) = next() else { return };
    first(sig);
    if let Some(sig) = next() {
        again(sig);
    }
}

#[cfg(test)]
mod tests {
    use super::serve;
    use std::cell::RefCell;

    #[test]
    fn first_signal_stops_cleanly_and_a_second_cuts_it_short() {
        let calls = RefCell::new(Vec::new());
        let mut source = vec![libc::SIGINT, libc::SIGTERM, libc::SIGTERM].into_iter();
        serve(
            || source.next(),
            |s| calls.borrow_mut().push(("first", s)),
            |s| calls.borrow_mut().push(("again", s)),
        );
        assert_eq!(
            *calls.borrow(),
            [("first", libc::SIGINT), ("again", libc::SIGTERM)]
        );
        // The third signal is never waited for: `again` ends the process.
        assert_eq!(source.next(), Some(libc::SIGTERM));
    }

    #[test]
    fn a_failed_wait_calls_nothing() {
        let called = RefCell::new(0);
        serve(
            || None,
            |_| *called.borrow_mut() += 1,
            |_| *called.borrow_mut() += 1,
        );
        assert_eq!(*called.borrow(), 0);
        let mut source = vec![libc::SIGTERM].into_iter();
        serve(
            || source.next(),
            |_| *called.borrow_mut() += 1,
            |_| *called.borrow_mut() += 10,
        );
        assert_eq!(*called.borrow(), 1);
    }
}
