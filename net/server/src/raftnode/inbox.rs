//! [`Inbox`]: the log core's local, bounded event queue. Every source on the log executor (peer
//! readers, the tasks that drain the client channels, the peer senders' failure reports) pushes
//! here; the loop takes everything queued at once (one Raft round per batch, DESIGN.md §3).
//!
//! Single-threaded (glommio-local): an `Rc<RefCell>` with wakers, no locks.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

struct State<T> {
    q: VecDeque<T>,
    cap: usize,
    consumer: Option<Waker>,
    producers: Vec<Waker>,
}

/// A bounded multi-producer, single-consumer queue local to one executor. Clones share it.
pub struct Inbox<T> {
    st: Rc<RefCell<State<T>>>,
}

impl<T> Clone for Inbox<T> {
    fn clone(&self) -> Self {
        Inbox {
            st: self.st.clone(),
        }
    }
}

impl<T> Inbox<T> {
    /// An empty inbox holding at most `cap` items (producers that `push` wait beyond).
    pub fn new(cap: usize) -> Self {
        Inbox {
            st: Rc::new(RefCell::new(State {
                q: VecDeque::new(),
                cap: cap.max(1),
                consumer: None,
                producers: Vec::new(),
            })),
        }
    }

    /// Queues `item`, waiting while the inbox is full (back-pressure onto the producer).
    pub async fn push(&self, item: T) {
        poll_fn(|cx| {
            let mut st = self.st.borrow_mut();
            if st.q.len() < st.cap {
                Poll::Ready(())
            } else {
                st.producers.push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        self.push_now(item);
    }

    /// Queues `item` past the bound (for rare control events that must not be lost).
    pub fn push_now(&self, item: T) {
        let mut st = self.st.borrow_mut();
        st.q.push_back(item);
        if let Some(w) = st.consumer.take() {
            w.wake();
        }
    }

    /// Waits until at least one item is queued.
    pub async fn wait(&self) {
        poll_fn(|cx| {
            let mut st = self.st.borrow_mut();
            if st.q.is_empty() {
                st.consumer = Some(cx.waker().clone());
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await
    }

    /// Takes everything queued and wakes the waiting producers.
    pub fn drain(&self) -> Vec<T> {
        let mut st = self.st.borrow_mut();
        let out: Vec<T> = st.q.drain(..).collect();
        for w in st.producers.drain(..) {
            w.wake();
        }
        out
    }
}
