//! A bounded channel where the newest item wins: when it is full, the sender throws away the
//! oldest item and counts it as dropped. The worker never blocks on a slow consumer, and the
//! consumer always sees the newest frames.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};

/// Sending side, held by the worker.
pub struct MailboxSender<T> {
    tx: Sender<T>,
    /// A clone of the receiver, used only to evict the oldest item when full.
    evict: Receiver<T>,
    dropped: Arc<AtomicU64>,
    /// Gone once the receiver is dropped (the eviction handle keeps the channel itself open).
    receiver_alive: Weak<()>,
}

/// Receiving side, held by the game.
pub struct MailboxReceiver<T> {
    rx: Receiver<T>,
    dropped: Arc<AtomicU64>,
    _alive: Arc<()>,
}

/// A mailbox holding at most `capacity` (at least 1) items.
pub fn mailbox<T>(capacity: usize) -> (MailboxSender<T>, MailboxReceiver<T>) {
    let (tx, rx) = bounded(capacity.max(1));
    let dropped = Arc::new(AtomicU64::new(0));
    let alive = Arc::new(());
    (
        MailboxSender {
            tx,
            evict: rx.clone(),
            dropped: dropped.clone(),
            receiver_alive: Arc::downgrade(&alive),
        },
        MailboxReceiver {
            rx,
            dropped,
            _alive: alive,
        },
    )
}

impl<T> Clone for MailboxSender<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            evict: self.evict.clone(),
            dropped: self.dropped.clone(),
            receiver_alive: self.receiver_alive.clone(),
        }
    }
}

impl<T> MailboxSender<T> {
    /// Delivers `item`, evicting the oldest items while the mailbox is full. Never blocks.
    /// Returns `false` when the receiver is gone.
    pub fn send(&self, mut item: T) -> bool {
        if self.receiver_alive.strong_count() == 0 {
            return false;
        }
        loop {
            match self.tx.try_send(item) {
                Ok(()) => return true,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(back)) => {
                    item = back;
                    if self.evict.try_recv().is_ok() {
                        self.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

impl<T> MailboxReceiver<T> {
    /// The newest item, if any arrived; older waiting items are discarded and counted as dropped.
    pub fn latest(&self) -> Option<T> {
        let mut newest = self.rx.try_recv().ok()?;
        while let Ok(next) = self.rx.try_recv() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            newest = next;
        }
        Some(newest)
    }

    /// The oldest waiting item, if any (for consumers that want every frame, such as recorders).
    pub fn next(&self) -> Option<T> {
        self.rx.try_recv().ok()
    }

    /// Waits up to `timeout` for the next item.
    pub fn next_timeout(&self, timeout: std::time::Duration) -> Option<T> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// Items that were thrown away so far, on either side.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_wins_and_drops_are_counted() {
        let (tx, rx) = mailbox(2);
        for i in 0..5 {
            assert!(tx.send(i));
        }
        // 0, 1, 2 were evicted by the sender; 3 is skipped by `latest`.
        assert_eq!(rx.latest(), Some(4));
        assert_eq!(rx.dropped(), 4);
        assert_eq!(rx.latest(), None);
        drop(rx);
        assert!(!tx.send(9));
    }
}
