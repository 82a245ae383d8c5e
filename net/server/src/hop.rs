//! Bounded single-producer, single-consumer hand-off between two roles (DESIGN.md §3's
//! cross-core channels): a glommio `shared_channel` when the roles run on different executors,
//! a glommio `local_channel` when they share one.
//!
//! Why both: a `shared_channel` receiver is woken only at its executor's next reactor pass
//! (`process_shared_channels`, with the `io_uring_enter` calls of a park or poll), even when the
//! sender runs on the same thread. Measured on this project's 2-vCPU VM (glommio 0.9, one
//! executor, ping-pong between two tasks): ~10 µs per hop through a `shared_channel`, ~0.1 µs
//! through a `local_channel`, whose sender wakes the receiving task directly. With one or two
//! cores every role shares one executor (`config.rs` `CoreMap`) and a 1-client put crosses three
//! hops (client → log → apply → client).
//!
//! Both ends are created before the executors start and are `Send`; each is bound on its
//! executor with `connect`. A co-located pair's local channel is created by whichever end
//! connects first and found by the other through a per-thread registry, so both ends must
//! connect on the same executor (the wiring knows: roles on one core share its executor).
//!
//! An end dropped without connecting (a role that failed before wiring its channels, e.g. a log
//! core refusing its WAL) closes the channel for the other end, as a dropped connected end
//! does: the other end's half waiting in the registry is dropped with it, or, if the other end
//! has not connected yet, it finds the channel already closed when it does. Without that the
//! other role waited forever and the process neither served nor exited.

use ahash::AHashMap as HashMap;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::channels::shared_channel::{
    self, ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender,
};
use glommio::GlommioError;
use std::any::Any;
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// A new channel of capacity `cap`; `same_executor` says whether both ends will connect on one
/// executor.
pub fn bounded<T: Send + 'static>(cap: usize, same_executor: bool) -> (Sender<T>, Receiver<T>) {
    if same_executor {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        let gone = Arc::new(AtomicBool::new(false));
        (
            Sender(Some(Unbound::Local {
                id,
                cap,
                gone: gone.clone(),
            })),
            Receiver(Some(Unbound::Local { id, cap, gone })),
        )
    } else {
        let (tx, rx) = shared_channel::new_bounded(cap);
        (
            Sender(Some(Unbound::Shared(tx))),
            Receiver(Some(Unbound::Shared(rx))),
        )
    }
}

enum Unbound<S> {
    Shared(S),
    /// `gone`: one end was dropped without connecting.
    Local {
        id: u64,
        cap: usize,
        gone: Arc<AtomicBool>,
    },
}

/// Drop of an unconnected end: closes the channel for the other end (module docs).
fn drop_unbound<S>(u: Option<Unbound<S>>) {
    if let Some(Unbound::Local { id, gone, .. }) = u {
        gone.store(true, Ordering::Release);
        // The other end's half, if it connected on this thread: dropping it closes its channel.
        let half = WAITING.with(|w| w.borrow_mut().remove(&id));
        drop(half);
    }
}

thread_local! {
    /// Halves of co-located channels whose other end has connected on this thread and this end
    /// has not yet: channel id → the waiting half.
    static WAITING: RefCell<HashMap<u64, Box<dyn Any>>> = RefCell::new(HashMap::new());
}

/// Takes this thread's waiting half of channel `id`, or creates the channel and leaves the
/// other half waiting (or drops it at once when the other end is `gone`: the channel is then
/// closed from the start).
fn local_half<T: 'static, Mine: 'static, Theirs: 'static>(
    id: u64,
    cap: usize,
    gone: &AtomicBool,
    split: impl FnOnce((LocalSender<T>, LocalReceiver<T>)) -> (Mine, Theirs),
) -> Mine {
    let (mine, theirs) = WAITING.with(|w| {
        let mut w = w.borrow_mut();
        if let Some(half) = w.remove(&id) {
            let mine = *half
                .downcast::<Mine>()
                .expect("a channel's two ends have the two half types");
            return (mine, None);
        }
        let (mine, theirs) = split(local_channel::new_bounded(cap));
        if gone.load(Ordering::Acquire) {
            return (mine, Some(theirs));
        }
        w.insert(id, Box::new(theirs));
        (mine, None)
    });
    // Outside the registry borrow: the other end is gone, so its half goes too.
    drop(theirs);
    mine
}

/// The sending end, not yet bound to an executor. Send. (`None` once connected.)
pub struct Sender<T: Send>(Option<Unbound<SharedSender<T>>>);

/// The receiving end, not yet bound to an executor. Send. (`None` once connected.)
pub struct Receiver<T: Send>(Option<Unbound<SharedReceiver<T>>>);

impl<T: Send + 'static> Sender<T> {
    /// Binds this end to the calling executor (waits for the other end of a shared channel).
    pub async fn connect(mut self) -> Tx<T> {
        match self.0.take().expect("an end connects once") {
            Unbound::Shared(s) => Tx::Shared(s.connect().await),
            Unbound::Local { id, cap, gone } => {
                Tx::Local(local_half(id, cap, &gone, |(s, r)| (s, r)))
            }
        }
    }
}

impl<T: Send + 'static> Receiver<T> {
    /// Binds this end to the calling executor (waits for the other end of a shared channel).
    pub async fn connect(mut self) -> Rx<T> {
        match self.0.take().expect("an end connects once") {
            Unbound::Shared(r) => Rx::Shared(r.connect().await),
            Unbound::Local { id, cap, gone } => {
                Rx::Local(local_half(id, cap, &gone, |(s, r)| (r, s)))
            }
        }
    }
}

impl<T: Send> Drop for Sender<T> {
    fn drop(&mut self) {
        drop_unbound(self.0.take());
    }
}

impl<T: Send> Drop for Receiver<T> {
    fn drop(&mut self) {
        drop_unbound(self.0.take());
    }
}

/// The sending end on its executor.
pub enum Tx<T: Send> {
    /// To another executor.
    Shared(ConnectedSender<T>),
    /// To a task of this executor.
    Local(LocalSender<T>),
}

impl<T: Send> Tx<T> {
    /// Sends, waiting while the channel is full; fails once the receiver is gone.
    pub async fn send(&self, item: T) -> Result<(), GlommioError<T>> {
        match self {
            Tx::Shared(s) => s.send(item).await,
            Tx::Local(s) => s.send(item).await,
        }
    }

    /// Sends without waiting: `GlommioError::WouldBlock` when full, `Closed` once the receiver
    /// is gone.
    pub fn try_send(&self, item: T) -> Result<(), GlommioError<T>> {
        match self {
            Tx::Shared(s) => s.try_send(item),
            Tx::Local(s) => s.try_send(item),
        }
    }
}

/// The receiving end on its executor.
pub enum Rx<T: Send> {
    /// From another executor.
    Shared(ConnectedReceiver<T>),
    /// From a task of this executor.
    Local(LocalReceiver<T>),
}

impl<T: Send> Rx<T> {
    /// The next item; `None` once the sender is gone and everything sent was received.
    pub async fn recv(&self) -> Option<T> {
        match self {
            Rx::Shared(r) => r.recv().await,
            Rx::Local(r) => r.recv().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use glommio::{LocalExecutorBuilder, Placement};

    fn on_executor<F: std::future::Future<Output = ()> + 'static>(
        f: impl FnOnce() -> F + Send + 'static,
    ) {
        LocalExecutorBuilder::new(Placement::Unbound)
            .io_memory(512 << 10)
            .spawn(f)
            .expect("executor")
            .join()
            .expect("join");
    }

    #[test]
    fn co_located_ends_find_each_other_in_either_connect_order_and_keep_fifo_and_bounds() {
        on_executor(|| async {
            for receiver_first in [false, true] {
                let (tx, rx) = bounded::<u32>(2, true);
                let (tx, rx) = if receiver_first {
                    let rx = rx.connect().await;
                    (tx.connect().await, rx)
                } else {
                    let tx = tx.connect().await;
                    (tx, rx.connect().await)
                };
                assert!(matches!((&tx, &rx), (Tx::Local(_), Rx::Local(_))));
                tx.try_send(1).unwrap();
                tx.send(2).await.unwrap();
                assert!(matches!(tx.try_send(3), Err(GlommioError::WouldBlock(_))));
                assert_eq!(rx.recv().await, Some(1));
                tx.try_send(3).unwrap();
                assert_eq!(rx.recv().await, Some(2));
                assert_eq!(rx.recv().await, Some(3));
                drop(tx);
                assert_eq!(rx.recv().await, None, "sender gone: end of stream");
            }
            WAITING.with(|w| assert!(w.borrow().is_empty(), "no half left behind"));
        });
    }

    #[test]
    fn a_waiting_receiver_is_woken_by_a_send_from_another_task() {
        on_executor(|| async {
            let (tx, rx) = bounded::<u32>(4, true);
            let rx = rx.connect().await;
            let consumer = glommio::spawn_local(async move {
                let mut got = Vec::new();
                while let Some(v) = rx.recv().await {
                    got.push(v);
                }
                got
            });
            let tx = tx.connect().await;
            for v in 0..10 {
                tx.send(v).await.unwrap();
            }
            drop(tx);
            assert_eq!(consumer.await, (0..10).collect::<Vec<_>>());
        });
    }

    /// `f`'s output, or a test failure if it has not finished in 10 s (the bug this guards
    /// against is a wait that never ends).
    async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
        glommio::timer::timeout(std::time::Duration::from_secs(10), async { Ok(f.await) })
            .await
            .expect("still waiting after 10 s")
    }

    /// A role that fails before connecting its end (dropping it) must not leave the other
    /// role waiting forever: whichever end is dropped unconnected, before or after the other
    /// connected, the connected end sees a closed channel.
    #[test]
    fn an_end_dropped_without_connecting_closes_the_channel() {
        on_executor(|| async {
            // The receiver connected first; the sender is then dropped unconnected.
            let (tx, rx) = bounded::<u32>(2, true);
            let rx = rx.connect().await;
            drop(tx);
            assert_eq!(within(rx.recv()).await, None);
            // The sender is dropped before the receiver connects.
            let (tx, rx) = bounded::<u32>(2, true);
            drop(tx);
            assert_eq!(within(rx.connect().await.recv()).await, None);
            // The same for a dropped receiver: sends fail instead of waiting.
            let (tx, rx) = bounded::<u32>(1, true);
            let tx = tx.connect().await;
            drop(rx);
            assert!(tx.try_send(1).is_err());
            assert!(within(tx.send(2)).await.is_err());
            let (tx, rx) = bounded::<u32>(1, true);
            drop(rx);
            let tx = tx.connect().await;
            assert!(within(tx.send(1)).await.is_err());
            WAITING.with(|w| assert!(w.borrow().is_empty(), "no half left behind"));
        });
    }

    #[test]
    fn ends_on_two_executors_use_a_shared_channel() {
        let (tx, rx) = bounded::<u32>(4, false);
        let t = std::thread::spawn(move || {
            on_executor(move || async move {
                let tx = tx.connect().await;
                assert!(matches!(tx, Tx::Shared(_)));
                for v in 0..5 {
                    tx.send(v).await.unwrap();
                }
            })
        });
        on_executor(move || async move {
            let rx = rx.connect().await;
            let mut got = Vec::new();
            while let Some(v) = rx.recv().await {
                got.push(v);
            }
            assert_eq!(got, (0..5).collect::<Vec<_>>());
        });
        t.join().unwrap();
    }
}
