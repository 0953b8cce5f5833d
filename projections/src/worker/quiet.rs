//! Quiet spells: a worker that received nothing for [`QUIET`] pauses its partitions, so an idle
//! engine leaves the broker idle too. Tansu answers each fetch only after the whole fetch wait
//! and reads every partition on each pass: a worker fetching with nothing to fetch kept it at
//! 0.4 of a core.
//!
//! A paused worker resumes
//! - when the relay announces published records (`NOTIFY` on [`RELAYED_CHANNEL`], heard by a
//!   listener task): for a whole quiet spell. An announcement also lengthens the spell of a
//!   worker still fetching, and the relay announces at most every 500 ms, far less than
//!   [`QUIET`]: every record it publishes is fetched while the worker is fetching;
//! - every [`LOOK_EVERY`] on its own, for [`LOOK_FOR`], for records nobody announced (a lost
//!   notification, a listener reconnecting, a producer other than the relay).
//!
//! librdkafka drops what it prefetched for a paused partition and fetches again from the
//! record after the last one handed to the worker when it resumes: nothing is skipped. A resume
//! is followed by a request to the broker ([`nudge`]), without which librdkafka took up to a
//! second to fetch again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use commerce_contracts::topics::RELAYED_CHANNEL;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long a worker fetches after its last record or announcement before it pauses.
pub(super) const QUIET: Duration = Duration::from_secs(2);
/// How often a paused worker looks for records on its own.
pub(super) const LOOK_EVERY: Duration = Duration::from_secs(1);
/// How long such a look lasts: a few fetch waits.
pub(super) const LOOK_FOR: Duration = Duration::from_millis(200);
/// How long a nudge (see [`nudge`]) may wait for the broker's answer.
const NUDGE_TIMEOUT: Duration = Duration::from_secs(1);
/// The pause before listening again after the listener's connection failed.
const RELISTEN_PAUSE: Duration = Duration::from_secs(1);

/// Whether the worker fetches, and until when. Every method that looks at the time is told
/// it (`now`), so the tests drive it through time without sleeping.
pub(super) struct Quiet {
    paused: bool,
    /// While fetching: when to pause. While paused: when to look.
    deadline: Instant,
    announcements: watch::Receiver<u64>,
    listener: Option<JoinHandle<()>>,
}

impl Quiet {
    /// Fetching, with a listener for the relay's announcements on `pool`'s database.
    pub(super) fn start(pool: &PgPool) -> Self {
        let (announce, announcements) = watch::channel(0);
        let mut quiet = Self::hearing(announcements, Instant::now());
        quiet.listener = Some(tokio::spawn(listen(pool.clone(), announce)));
        quiet
    }

    /// Fetching, woken by whatever counts into `announcements`.
    fn hearing(announcements: watch::Receiver<u64>, now: Instant) -> Self {
        Self {
            paused: false,
            deadline: now + QUIET,
            announcements,
            listener: None,
        }
    }

    /// How long the loop may sleep before [`Quiet::tick`] has something to do, at most `limit`.
    pub(super) fn sleep_for(&self, limit: Duration, now: Instant) -> Duration {
        self.deadline.saturating_duration_since(now).min(limit)
    }

    /// Completes at the relay's next announcement (never, once the listener has ended).
    pub(super) async fn announced(&mut self) {
        if self.announcements.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// A record arrived: fetch for another quiet spell.
    pub(super) fn received(&mut self, now: Instant) {
        self.deadline = now + QUIET;
    }

    /// The relay announced records: fetch for a quiet spell (from now, if already fetching).
    pub(super) fn wake<C: ConsumerContext + 'static>(
        &mut self,
        consumer: &Arc<StreamConsumer<C>>,
        now: Instant,
    ) {
        self.resume(consumer, now + QUIET, now);
    }

    /// Pauses when the quiet spell is over; looks when a paused worker is due to.
    pub(super) fn tick<C: ConsumerContext + 'static>(
        &mut self,
        consumer: &Arc<StreamConsumer<C>>,
        now: Instant,
    ) {
        if now < self.deadline {
            return;
        }
        if self.paused {
            self.resume(consumer, now + LOOK_FOR, now);
        } else {
            self.pause(consumer, now);
        }
    }

    fn pause<C: ConsumerContext + 'static>(
        &mut self,
        consumer: &Arc<StreamConsumer<C>>,
        now: Instant,
    ) {
        let paused = consumer
            .assignment()
            .and_then(|partitions| consumer.pause(&partitions));
        match paused {
            Ok(()) => {
                self.paused = true;
                self.deadline = now + LOOK_EVERY;
            }
            Err(error) => {
                tracing::debug!(%error, "pausing quiet partitions");
                self.deadline = now + QUIET;
            }
        }
    }

    /// Fetches until `until` (or keeps fetching until then).
    fn resume<C: ConsumerContext + 'static>(
        &mut self,
        consumer: &Arc<StreamConsumer<C>>,
        until: Instant,
        now: Instant,
    ) {
        self.deadline = until;
        if !self.paused {
            return;
        }
        // Partitions stay paused across a rebalance that keeps them here, and the assignment
        // may have changed since the pause: resume whatever is assigned now.
        let resumed = consumer.assignment().and_then(|partitions| {
            consumer.resume(&partitions)?;
            nudge(consumer, &partitions);
            Ok(())
        });
        match resumed {
            Ok(()) => self.paused = false,
            Err(error) => {
                tracing::warn!(%error, "resuming paused partitions; trying again shortly");
                self.deadline = now + LOOK_FOR;
            }
        }
    }
}

/// librdkafka notices resumed partitions only when its broker thread next wakes, up to a second
/// later (measured: 80 ms to more than 400 ms), while any request to the broker wakes it at once
/// (then the fetch starts within 10 ms). The watermarks of one partition are the cheapest such
/// request; they are asked for off the runtime's threads, and the answer is not needed. They
/// wake only the thread of that partition's leader: on a cluster of several brokers, partitions
/// led by the others still start at their thread's next wake (Kafka, unlike Tansu, answers an
/// idle fetch cheaply, so a worker there pauses for little gain but loses nothing).
fn nudge<C: ConsumerContext + 'static>(
    consumer: &Arc<StreamConsumer<C>>,
    partitions: &TopicPartitionList,
) {
    let Some((topic, partition)) = partitions
        .elements()
        .first()
        .map(|element| (element.topic().to_owned(), element.partition()))
    else {
        return;
    };
    let consumer = Arc::clone(consumer);
    tokio::task::spawn_blocking(move || {
        if let Err(error) = consumer.fetch_watermarks(&topic, partition, NUDGE_TIMEOUT) {
            tracing::debug!(%error, "nudging the fetcher after a resume");
        }
    });
}

impl Drop for Quiet {
    fn drop(&mut self) {
        if let Some(listener) = &self.listener {
            listener.abort();
        }
    }
}

/// Counts the relay's announcements into `announce`, listening again after a failure.
async fn listen(pool: PgPool, announce: watch::Sender<u64>) {
    loop {
        let failure = match PgListener::connect_with(&pool).await {
            Ok(mut listener) => match listener.listen(RELAYED_CHANNEL).await {
                // `recv` reconnects by itself; it fails only when it cannot.
                Ok(()) => loop {
                    match listener.recv().await {
                        Ok(_) => announce.send_modify(|count| *count = count.wrapping_add(1)),
                        Err(error) => break error,
                    }
                },
                Err(error) => error,
            },
            Err(error) => error,
        };
        tracing::debug!(%failure, "listening for the relay's announcements; again shortly");
        // Records may have been announced while nobody listened.
        announce.send_modify(|count| *count = count.wrapping_add(1));
        tokio::time::sleep(RELISTEN_PAUSE).await;
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::ClientConfig;
    use rdkafka::consumer::DefaultConsumerContext;

    use super::*;

    const LONG: Duration = Duration::from_secs(60);
    const MS: Duration = Duration::from_millis(1);

    /// A consumer with nothing assigned: pausing and resuming it always succeed, and no broker
    /// needs to answer.
    fn consumer() -> Arc<StreamConsumer<DefaultConsumerContext>> {
        Arc::new(
            ClientConfig::new()
                .set("bootstrap.servers", "127.0.0.1:1")
                .set("group.id", "quiet-tests")
                .create()
                .expect("a consumer"),
        )
    }

    #[tokio::test]
    async fn given_a_fetching_worker_when_a_quiet_spell_passes_then_it_pauses_and_looks_now_and_then()
     {
        let consumer = consumer();
        let (_announce, announcements) = watch::channel(0);
        let start = Instant::now();
        let mut quiet = Quiet::hearing(announcements, start);
        assert_eq!(quiet.sleep_for(LONG, start), QUIET);
        quiet.tick(&consumer, start + QUIET - MS);
        assert!(!quiet.paused, "still within the quiet spell");
        let paused_at = start + QUIET;
        quiet.tick(&consumer, paused_at);
        assert!(quiet.paused);
        assert_eq!(quiet.sleep_for(LONG, paused_at), LOOK_EVERY);
        // Then it looks for a moment every LOOK_EVERY, and pauses again.
        let look = paused_at + LOOK_EVERY;
        quiet.tick(&consumer, look);
        assert!(!quiet.paused, "looking");
        assert_eq!(quiet.sleep_for(LONG, look), LOOK_FOR);
        quiet.tick(&consumer, look + LOOK_FOR);
        assert!(quiet.paused);
        assert_eq!(quiet.sleep_for(LONG, look + LOOK_FOR), LOOK_EVERY);
    }

    #[tokio::test]
    async fn given_a_fetching_worker_when_records_keep_coming_then_it_never_pauses() {
        let consumer = consumer();
        let (_announce, announcements) = watch::channel(0);
        let mut now = Instant::now();
        let mut quiet = Quiet::hearing(announcements, now);
        for _ in 0..10 {
            now += QUIET / 2;
            quiet.received(now);
            quiet.tick(&consumer, now + QUIET - MS);
            assert!(!quiet.paused);
        }
    }

    #[tokio::test]
    async fn given_a_paused_worker_when_the_relay_announces_then_it_fetches_for_a_whole_spell() {
        let consumer = consumer();
        let (announce, announcements) = watch::channel(0);
        let start = Instant::now();
        let mut quiet = Quiet::hearing(announcements, start);
        quiet.tick(&consumer, start + QUIET);
        assert!(quiet.paused);
        announce.send_modify(|count| *count += 1);
        tokio::time::timeout(LONG, quiet.announced())
            .await
            .expect("the announcement is heard");
        let woken = start + QUIET + MS;
        quiet.wake(&consumer, woken);
        assert!(!quiet.paused);
        assert_eq!(quiet.sleep_for(LONG, woken), QUIET);
        // And one announcement wakes it once.
        assert!(
            tokio::time::timeout(Duration::from_millis(50), quiet.announced())
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn given_a_fetching_worker_when_the_relay_announces_then_its_spell_starts_again() {
        let consumer = consumer();
        let (announce, announcements) = watch::channel(0);
        let start = Instant::now();
        let mut quiet = Quiet::hearing(announcements, start);
        announce.send_modify(|count| *count += 1);
        quiet.announced().await;
        let woken = start + QUIET - MS;
        quiet.wake(&consumer, woken);
        quiet.tick(&consumer, woken + QUIET - MS);
        assert!(!quiet.paused, "the announcement lengthened the spell");
        quiet.tick(&consumer, woken + QUIET);
        assert!(quiet.paused);
    }

    #[tokio::test]
    async fn given_the_listener_gone_then_no_announcement_ever_completes() {
        let (announce, announcements) = watch::channel(0);
        let mut quiet = Quiet::hearing(announcements, Instant::now());
        drop(announce);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), quiet.announced())
                .await
                .is_err()
        );
    }
}
