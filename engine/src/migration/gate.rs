//! The gate that holds requests for a range during a cutover.

use std::cell::{Cell, RefCell};
use std::task::{Poll, Waker};

/// A one-shot gate: tasks wait until it opens (at the end of a cutover, committed or not).
#[derive(Debug, Default)]
pub struct Gate {
    open: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
}

impl Gate {
    pub fn open(&self) {
        self.open.set(true);
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    pub fn is_open(&self) -> bool {
        self.open.get()
    }

    pub async fn wait(&self) {
        std::future::poll_fn(|cx| {
            if self.open.get() {
                return Poll::Ready(());
            }
            self.waiters.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}
