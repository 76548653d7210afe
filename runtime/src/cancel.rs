//! Cancellation: how an aborted job stops a rank in the middle of a kernel call.
//!
//! A [`CancelToken`] is a shared flag the communication backend raises when any rank aborts
//! ([`Comm::cancel_token`](crate::comm::Comm::cancel_token)). The ring pass checks it between
//! steps, and hands the kernel a [`Cancellable`] executor that skips the remaining work items of
//! a call once the flag is up, so a failure elsewhere ends this rank within one work item
//! (milliseconds) instead of one whole ring step. Results of a cancelled call are garbage: the
//! caller must return the abort error, never the state.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::sched::Executor;

/// A cheap, clonable "stop now" flag shared by every rank of an in-process job.
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Option<Arc<AtomicBool>>);

impl CancelToken {
    /// A token that can be cancelled (by any clone).
    pub fn new() -> Self {
        CancelToken(Some(Arc::new(AtomicBool::new(false))))
    }

    /// A token that is never cancelled (backends without an in-process abort flag).
    pub fn never() -> Self {
        CancelToken(None)
    }

    /// Raises the flag; every clone sees it from now on.
    pub fn cancel(&self) {
        if let Some(flag) = &self.0 {
            flag.store(true, Ordering::Release);
        }
    }

    /// True once any clone has been cancelled. One relaxed-cost atomic load: cheap enough to
    /// call between kernel work items.
    #[inline]
    pub fn is_cancelled(&self) -> bool {
        self.0.as_ref().is_some_and(|f| f.load(Ordering::Acquire))
    }
}

/// An executor that runs `inner`'s calls but skips every work item that starts after `token`
/// was cancelled (each thread still gets its `init` state). The kernel needs no change: the
/// check sits between items.
pub struct Cancellable<'a, E: ?Sized> {
    inner: &'a E,
    token: &'a CancelToken,
}

impl<'a, E: Executor + ?Sized> Cancellable<'a, E> {
    /// Wraps `inner`; items are skipped once `token` is cancelled.
    pub fn new(inner: &'a E, token: &'a CancelToken) -> Self {
        Cancellable { inner, token }
    }
}

impl<E: Executor + ?Sized> Executor for Cancellable<'_, E> {
    fn threads(&self) -> usize {
        self.inner.threads()
    }

    fn run<T: Send, S: Send>(
        &self,
        class: &str,
        items: &mut [T],
        cost: &(dyn Fn(&T) -> f64 + Sync),
        init: &(dyn Fn() -> S + Sync),
        work: &(dyn Fn(&mut S, &mut T) + Sync),
    ) -> Vec<S> {
        let token = self.token;
        self.inner.run(class, items, cost, init, &|s, item| {
            if !token.is_cancelled() {
                work(s, item);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn items_after_a_cancel_are_skipped() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let token = CancelToken::new();
        let ran = AtomicUsize::new(0);
        let exec = Cancellable::new(&pool, &token);
        let mut items: Vec<usize> = (0..100).collect();
        exec.run("t", &mut items, &|_| 1.0, &|| (), &|(), &mut i| {
            ran.fetch_add(1, Ordering::Relaxed);
            if i == 9 {
                token.cancel();
            }
        });
        // One thread, in order: items 0..=9 ran, the cancel stopped the other 90.
        assert_eq!(ran.load(Ordering::Relaxed), 10);
        assert!(token.is_cancelled() && token.clone().is_cancelled());
        assert!(!CancelToken::never().is_cancelled());
        CancelToken::never().cancel();
    }
}
