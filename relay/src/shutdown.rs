//! A caller-supplied shutdown signal that many await points can race against.

use std::future::Future;
use std::pin::Pin;

pub(crate) struct Shutdown {
    signal: Pin<Box<dyn Future<Output = ()> + Send>>,
    fired: bool,
}

impl std::fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shutdown")
            .field("fired", &self.fired)
            .finish()
    }
}

impl Shutdown {
    pub(crate) fn new(signal: impl Future<Output = ()> + Send + 'static) -> Self {
        Self {
            signal: Box::pin(signal),
            fired: false,
        }
    }

    async fn wait(&mut self) {
        if !self.fired {
            self.signal.as_mut().await;
            self.fired = true;
        }
    }

    /// Runs `work` unless shutdown comes first (`None` then; the work is dropped).
    pub(crate) async fn guard<F: Future>(&mut self, work: F) -> Option<F::Output> {
        tokio::select! {
            biased;
            () = self.wait() => None,
            output = work => Some(output),
        }
    }

    /// Sleeps for `delay`; `false` when shutdown came first.
    pub(crate) async fn sleep(&mut self, delay: std::time::Duration) -> bool {
        self.guard(tokio::time::sleep(delay)).await.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn given_a_fired_signal_then_every_later_guard_returns_none() {
        let mut shutdown = Shutdown::new(async {});
        assert_eq!(shutdown.guard(async { 1 }).await, None);
        assert!(!shutdown.sleep(Duration::from_secs(60)).await);
    }

    #[tokio::test]
    async fn given_a_pending_signal_then_work_completes() {
        let mut shutdown = Shutdown::new(std::future::pending());
        assert_eq!(shutdown.guard(async { 1 }).await, Some(1));
    }
}
