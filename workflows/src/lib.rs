//! Process managers of the commerce engine: checkout, compensation, campaign settlement, and
//! the durable deadlines they arm. They turn events into commands on other aggregates.
//!
//! ```text
//! order.created ─► reserve stock ─► order.stock_reserved ─► payment (charge) ─► payment.succeeded
//!   ─► order.confirmed ─► fulfilment + stock commit + carrier label ─► shipping.label.created
//!   ─► order.label_attached
//! inventory.insufficient ─► order canceled (insufficient_stock)
//! payment.failed ─► retry by policy, else order canceled (payment_failed)
//! order.canceled / order.expired ─► release stock, void or refund payments
//! order expiry deadline ─► void a payment still awaiting the customer's action, then expire
//! payment.expired (hold lapsed) ─► order: retry or cancel; participant: dropped or left
//! campaign.joined ─► reserve ─► authorize ─► participant paid   (no stock/declined ─► dropped)
//! last place paid (successful campaign) ─► close
//! campaign.closed ─► capture, campaign order per paid participant, drop the unpaid
//! campaign.failed ─► void/refund, release
//! ```
//!
//! How it runs ([`Workflows::run`]):
//! - **Intake** (`intake`): one leader per database (a PostgreSQL session advisory lock; other
//!   engine processes stand by and take over) tails the event store's gap-free global log from
//!   its persisted cursor (`workflow_cursor`), saved every second while events flow and once
//!   the log falls quiet (most events need no reaction, and a save per event doubled the
//!   commits of a command-heavy load; the reactions since the last save replay idempotently
//!   after a crash). The log rather than the Kafka topics: it is the
//!   source of truth, totally ordered across aggregates (so a cancellation's compensation always
//!   runs after everything the checkout did before it), and needs no broker.
//! - **Concurrency** (`schedule`): reactions to different flows (orders, campaign
//!   participants) run at the same time, up to [`WorkflowConfig::concurrent_reactions`], each flow's in log
//!   order; events about many flows at once (a campaign closing) and reactions that give
//!   stock back run alone. A flash sale's participants are thus settled side by side: while
//!   one waits for its commit or the gateway, the others work. The cursor passes only events
//!   whose reaction is done.
//! - **Idempotence** (`engine`): every command carries the causing event as causation id, the
//!   flow's correlation id, and the idempotency key `pm:{event_id}:{step}`
//!   (`deadline:{aggregate}:{key}:{kind}:fire` for deadlines): re-processing after a crash
//!   replays stored outcomes. Everything created gets an id derived from what it is for (`ids`),
//!   and provider calls carry keys derived from those ids, so a repeated charge is the
//!   provider's echo, never a second charge (PAY-4).
//! - **State** (`links`): what was created for an order or participant, written before the
//!   creating command, so compensation finds it all (ORD-6, CMP-7).
//! - **Deadlines** (`deadlines`): durable rows fired once per (aggregate, kind) (ES-5).
//! - **Bookkeeping commits** (links and deadlines) do not wait for their WAL flush
//!   (`synchronous_commit = off` on a pool of their own): one reaction writes several, one
//!   after another, and each flush cost as much as the rest of the reaction. They stay as
//!   durable as the progress that needs them: a reaction's commands and the saved cursor
//!   commit synchronously, and that flush covers all the WAL written before it, so a crash can
//!   lose a bookkeeping row only together with the cursor position past its event, which is
//!   then handled again and writes the row again. Firing a deadline is idempotent, so a lost
//!   "fired" mark only fires it again.
//! - **Failures**: a transient failure (database, conflict, gateway) retries the same event
//!   with a capped backoff; a permanent one (an undecodable payload) is never skipped
//!   silently: the event is parked in `workflow_dead_letters` (`dead_letters`) and counted as
//!   `workflow_parked_total` before the cursor moves past it.
//! - **Gateways** ([`gateway`]): [`PaymentGateway`] and [`Carrier`] traits with the sandbox
//!   implementations of the API contract's test payment methods.
//!
//! Provider webhooks enter through the API as Payment `ApplyProviderEvent` commands, which the
//! Payment aggregate deduplicates by provider event id (PAY-6); the process managers react to
//! the resulting `payment.*` events like to any other. A webhook saying the provider took
//! money for a payment already closed is recorded apart ([`orphans`]), and the leader gives
//! that money back at the provider on its polls.

mod campaign;
mod checkout;
mod compensation;
mod dead_letters;
mod deadlines;
mod engine;
mod error;
pub mod gateway;
mod ids;
mod intake;
mod links;
pub mod orphans;
mod react;
mod schedule;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use commerce_aggregates::campaign::Campaign;
use commerce_aggregates::inventory::Inventory;
use commerce_aggregates::order::Order;
use commerce_aggregates::payment::Payment;
use commerce_aggregates::shipment::Shipment;
use commerce_aggregates::{Catalog, StoreCatalog};
use commerce_eventstore::{CommandExecutor, LogCursor, LogEvent, LogWakeups, PgEventStore};
use futures::StreamExt;
use sqlx::postgres::{PgConnection, PgPoolOptions};
use sqlx::{Connection, PgPool};
use tokio::sync::Notify;
use tokio::task::JoinSet;

pub use engine::Clock;
pub use error::WorkflowError;
pub use gateway::{Carrier, PaymentGateway, SandboxCarrier, SandboxGateway};

use deadlines::{Deadlines, Fired};
use engine::Engine;
use links::Links;
use schedule::{Ticket, Window};

/// How long reactions may run before the cursor is saved (it is also saved when the log
/// falls quiet): bounds what a new leader replays after a crash.
const CURSOR_SAVE_INTERVAL: Duration = Duration::from_secs(1);
/// Events read ahead of the cursor: new ones are read while fewer wait in the window.
const REACTIONS_READ_AHEAD: usize = 256;
/// Footprints looked up at once while a batch is read (see `react::footprint`).
const FOOTPRINT_LOOKUPS: usize = 16;

/// Tuning of the process managers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowConfig {
    /// Payment attempts per order before it is canceled with `payment_failed` (1 = no retry).
    pub max_payment_attempts: u32,
    /// How often the log is polled besides the append notifications, and how often the
    /// leadership is checked and due deadlines fired.
    pub poll_interval: Duration,
    /// How often a standby tries to take the leader lock.
    pub standby_interval: Duration,
    /// Events read from the log per batch.
    pub batch_size: u32,
    /// Reactions that may run at once, each about a different flow (1 = one event at a time,
    /// in log order): enough to keep the database's commit queue full while single reactions
    /// wait on theirs.
    pub concurrent_reactions: usize,
    /// Participants a closing campaign's reaction copies out of the campaign and settles at
    /// a time: a flash sale's hundred thousand at once were 21 MB of the engine's heap peak.
    pub close_page: usize,
    /// How long the payment provider keeps an uncaptured authorization (Stripe's default is
    /// 7 days). A participant joining a campaign that ends later than that is charged at once
    /// and refunded if the campaign fails, instead of held until the close (anchors §5).
    pub hold_validity: chrono::Duration,
}

impl Default for WorkflowConfig {
    fn default() -> Self {
        Self {
            max_payment_attempts: 1,
            poll_interval: Duration::from_millis(500),
            standby_interval: Duration::from_secs(1),
            batch_size: 200,
            concurrent_reactions: 32,
            close_page: 1024,
            hold_validity: chrono::Duration::days(7),
        }
    }
}

/// Creates or updates the workflow tables (idempotent; other crates' migrations may share the
/// database).
///
/// Runs on a connection of its own, never a pooled one: the migrator holds a session-level
/// advisory lock while it works, and a run cancelled half way (an engine stopped or aborted
/// during start-up) would otherwise hand that lock back to the pool with its connection,
/// blocking every later migration of the database for ever. Dropping a dedicated connection
/// ends its session, which releases the lock.
pub async fn migrate(pool: &PgPool) -> Result<(), WorkflowError> {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.set_ignore_missing(true);
    let mut connection = PgConnection::connect_with(&pool.connect_options()).await?;
    let migrated = migrator.run_direct(&mut connection).await;
    // Closing ends the session (and any lock it still holds) either way.
    let _closed = connection.close().await;
    migrated?;
    Ok(())
}

/// The command executors the process managers issue their commands through, one per
/// aggregate type.
///
/// An executor caches aggregates and queues the commands of each stream: a process that also
/// serves the HTTP API should pass the API's executors here (see
/// [`Workflows::with_executors`]), so both write through one cache and one queue per stream
/// instead of invalidating each other's cached aggregates on every write.
#[derive(Debug, Clone)]
pub struct Executors {
    pub orders: CommandExecutor<Order>,
    pub payments: CommandExecutor<Payment>,
    pub inventory: CommandExecutor<Inventory>,
    pub shipments: CommandExecutor<Shipment>,
    pub campaigns: CommandExecutor<Campaign>,
}

impl Executors {
    /// Fresh executors on `store`, with `catalog` for the Order and Campaign aggregates.
    pub fn new(store: &PgEventStore, catalog: Arc<dyn Catalog>) -> Self {
        Self {
            orders: CommandExecutor::new(store.clone(), Arc::clone(&catalog)),
            payments: CommandExecutor::new(store.clone(), ()),
            inventory: CommandExecutor::new(store.clone(), ()),
            shipments: CommandExecutor::new(store.clone(), ()),
            campaigns: CommandExecutor::new(store.clone(), catalog),
        }
    }
}

/// The process managers and the deadline runner of one engine process.
#[derive(Debug, Clone)]
pub struct Workflows {
    engine: Engine,
}

impl Workflows {
    /// Process managers on `pool` (the event store's database), with the given catalog (for
    /// the Order and Campaign executors), payment gateway and carrier.
    pub fn new(
        pool: PgPool,
        catalog: Arc<dyn Catalog>,
        gateway: Arc<dyn PaymentGateway>,
        carrier: Arc<dyn Carrier>,
    ) -> Self {
        let executors = Executors::new(&PgEventStore::new(pool.clone()), catalog);
        Self::with_executors(pool, executors, gateway, carrier)
    }

    /// Process managers on `pool` that issue their commands through `executors` (share the
    /// HTTP API's executors when both run in one process).
    pub fn with_executors(
        pool: PgPool,
        executors: Executors,
        gateway: Arc<dyn PaymentGateway>,
        carrier: Arc<dyn Carrier>,
    ) -> Self {
        let store = PgEventStore::new(pool.clone());
        let Executors {
            orders,
            payments,
            inventory,
            shipments,
            campaigns,
        } = executors;
        Self {
            engine: Engine {
                orders,
                payments,
                inventory,
                shipments,
                campaigns,
                bookkeeping: bookkeeping_pool(&pool),
                pool,
                store,
                gateway,
                carrier,
                clock: Clock::system(),
                config: WorkflowConfig::default(),
            },
        }
    }

    /// The sandbox gateway and carrier of the API contract.
    pub fn sandbox(pool: PgPool, catalog: Arc<dyn Catalog>) -> Self {
        Self::new(
            pool,
            catalog,
            Arc::new(SandboxGateway),
            Arc::new(SandboxCarrier),
        )
    }

    /// The sandbox gateway and carrier, with prices read from the Product aggregates of the
    /// event store on `pool` (what the `commerce workflows` command runs).
    pub fn sandbox_on_store(pool: PgPool) -> Self {
        let catalog = StoreCatalog::new(PgEventStore::new(pool.clone()));
        Self::sandbox(pool, Arc::new(catalog))
    }

    #[must_use]
    pub fn with_config(mut self, config: WorkflowConfig) -> Self {
        self.engine.config = config;
        self
    }

    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.engine.clock = clock;
        self
    }

    /// Runs until `shutdown` completes: waits to be the leader, then reacts to the log and
    /// fires due deadlines. Dropping the future mid-way (a crash) is safe: the next leader
    /// resumes from the persisted cursor and every step replays idempotently.
    pub async fn run(
        &self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), WorkflowError> {
        migrate(&self.engine.pool).await?;
        tokio::select! {
            () = shutdown => Ok(()),
            result = self.lead() => result,
        }
    }

    /// Standby until the lock is ours, then process while it stays ours.
    async fn lead(&self) -> Result<(), WorkflowError> {
        let config = &self.engine.config;
        loop {
            match intake::Leadership::try_acquire(&self.engine.pool).await {
                Ok(Some(mut leadership)) => {
                    tracing::info!("workflows: leader");
                    let result = self.process(&mut leadership).await;
                    leadership.release().await;
                    if let Err(error) = result {
                        tracing::warn!(%error, "workflows: lost leadership");
                    }
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "workflows: cannot reach the database"),
            }
            tokio::time::sleep(config.standby_interval).await;
        }
    }

    /// The leader's loop: read the log into the window (up to `REACTIONS_READ_AHEAD` events,
    /// and again on each append while reactions run), react to what may run (see
    /// `schedule`), move the cursor past what is done, and wait for a reaction to end, an
    /// append or the poll; every poll interval, check the leadership and whether a deadline
    /// is due.
    ///
    /// Deadlines fire between reactions, never beside one: when one is due the loop stops
    /// starting reactions, lets the running ones finish, and fires it.
    ///
    /// A trickle of commands wakes this loop once per command, so the loop's own round trips
    /// are paid per command: the cursor is saved once a second while events flow and when the
    /// log falls quiet, and the lock check and the deadline query run once per poll interval
    /// (deadlines are due to the second; a lost lock is noticed within the same interval).
    async fn process(&self, leadership: &mut intake::Leadership) -> Result<(), WorkflowError> {
        let engine = &self.engine;
        let log = engine.store.global_log();
        let appended = Arc::new(Notify::new());
        // In a set of its own, which stops the task when the loop returns.
        let mut forwarding = JoinSet::new();
        forwarding.spawn(forward_wakeups(log.wakeups().await?, appended.clone()));
        // Provider calls for orphaned funds run beside the loop, one pass at a time, so a slow
        // provider never holds up the reactions; dropping the set stops a pass.
        let mut settling = JoinSet::new();
        let mut cursor = intake::load_cursor(&engine.pool).await?;
        let mut read_up_to = cursor;
        let mut window = Window::default();
        // Tasks of their own, not futures polled by this loop: a reaction holding a pooled
        // connection must make progress while the loop awaits a connection for the next batch.
        let mut running = JoinSet::new();
        let mut waiting: HashMap<Ticket, LogEvent> = HashMap::new();
        let mut log_drained = false;
        let mut unsaved = false;
        let mut saved = Instant::now();
        let mut housekept: Option<Instant> = None;
        let mut deadline_due = false;
        loop {
            // Every poll interval: the lock, and whether a deadline is due. Deadlines fire
            // with no reaction running (a deadline and a reaction may concern the same
            // flow), so only a due one holds new reactions back until the running ones end.
            if housekept.is_none_or(|at| at.elapsed() >= engine.config.poll_interval) {
                if !leadership.still_held().await {
                    return Err(WorkflowError::decode(
                        "leader lock",
                        "the lock session ended",
                    ));
                }
                deadline_due = match engine.deadlines().any_due(engine.now()).await {
                    Ok(due) => due,
                    Err(error) => {
                        tracing::warn!(%error, "workflows: deadlines not checked; next poll");
                        false
                    }
                };
                while settling.try_join_next().is_some() {}
                if settling.is_empty() {
                    let engine = engine.clone();
                    settling.spawn(async move {
                        if let Err(error) = orphans::settle_due(&engine).await {
                            tracing::warn!(%error, "workflows: orphaned provider funds not checked; next poll");
                        }
                    });
                }
                housekept = Some(Instant::now());
            }
            if !deadline_due {
                for ticket in window.start(engine.config.concurrent_reactions.max(1)) {
                    if let Some(event) = waiting.remove(&ticket) {
                        let workflows = self.clone();
                        running
                            .spawn(async move { workflows.handle(&event).await.map(|()| ticket) });
                    }
                }
            } else if window.running() == 0 {
                self.fire_due().await?;
                deadline_due = false;
                continue;
            }
            if !log_drained && window.len() < REACTIONS_READ_AHEAD {
                let batch = intake::next_batch(&log, read_up_to, engine.config.batch_size).await?;
                log_drained = batch.len() < engine.config.batch_size as usize;
                if let (Some(first), Some(last)) = (batch.first(), batch.last()) {
                    tracing::debug!(%cursor, events = batch.len(), first = %LogCursor::after(first), last = %LogCursor::after(last), "workflows: batch");
                }
                // A payment event's footprint looks its payment up: a round trip each, so
                // several at once, taken in log order.
                let mut placed = futures::stream::iter(batch)
                    .map(|event| async move { (react::footprint(engine, &event).await, event) })
                    .buffered(FOOTPRINT_LOOKUPS);
                while let Some((footprint, event)) = placed.next().await {
                    read_up_to = LogCursor::after(&event);
                    waiting.insert(window.push(read_up_to, footprint), event);
                }
                continue;
            }
            let housekeeping =
                housekept.map_or_else(Instant::now, |at| at + engine.config.poll_interval);
            tokio::select! {
                Some(done) = running.join_next(), if !running.is_empty() => {
                    let done = match done {
                        Ok(done) => done?,
                        // Nothing aborts these tasks but dropping the set: a failed join is
                        // a panic.
                        Err(failed) => std::panic::resume_unwind(failed.into_panic()),
                    };
                    window.finish(done);
                    if let Some(passed) = window.pass_done() {
                        cursor = passed;
                        unsaved = true;
                    }
                    if unsaved && saved.elapsed() >= CURSOR_SAVE_INTERVAL {
                        intake::save_cursor(&engine.pool, cursor).await?;
                        (unsaved, saved) = (false, Instant::now());
                    }
                }
                // New events are read while reactions run: one slow reaction (a gateway
                // call, a retry's backoff) must not hold up the other flows' new events.
                () = appended.notified(), if log_drained => log_drained = false,
                // Notifications can be lost (a reconnect): the log is polled on the timer too.
                () = tokio::time::sleep_until(housekeeping.into()) => {
                    log_drained = false;
                    let quiet = running.is_empty();
                    if unsaved && (quiet || saved.elapsed() >= CURSOR_SAVE_INTERVAL) {
                        intake::save_cursor(&engine.pool, cursor).await?;
                        (unsaved, saved) = (false, Instant::now());
                    }
                }
            }
        }
    }

    /// Reacts to one event, retrying transient failures until they pass and parking the event
    /// as a dead letter when its reaction can never succeed.
    ///
    /// # Errors
    /// A permanently failing event could not be parked: the caller must not move past it.
    async fn handle(&self, event: &commerce_eventstore::LogEvent) -> Result<(), WorkflowError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            tracing::trace!(event_id = %event.event_id, event_type = %event.event_type, at = %LogCursor::after(event), attempt, "workflows: reacting");
            match react::react(&self.engine, event).await {
                Ok(()) => {
                    tracing::trace!(event_id = %event.event_id, "workflows: reacted");
                    return Ok(());
                }
                Err(error) if error.is_transient() => {
                    tracing::warn!(event_id = %event.event_id, event_type = %event.event_type, attempt, %error, "workflows: retrying");
                    tokio::time::sleep(intake::retry_delay(attempt)).await;
                }
                Err(error) => {
                    tracing::error!(event_id = %event.event_id, event_type = %event.event_type, %error, "workflows: reaction parked as a dead letter");
                    return dead_letters::park(&self.engine.pool, event, &error).await;
                }
            }
        }
    }

    /// Fires the due deadlines for up to a poll interval; the next poll goes on with the rest,
    /// so the leader keeps checking its lock and starting reactions after an outage that left
    /// many deadlines due.
    async fn fire_due(&self) -> Result<(), WorkflowError> {
        let deadlines = self.engine.deadlines();
        let started = Instant::now();
        loop {
            let engine = &self.engine;
            let fired = deadlines
                .fire_next(|| engine.now(), |due| react::fire(engine, due))
                .await;
            match fired {
                Ok(Some(Fired::Done(outcome))) => {
                    tracing::debug!(%outcome, "workflows: deadline fired");
                }
                // It waits for its retry; the deadlines due after it go first.
                Ok(Some(Fired::Failed {
                    error,
                    attempts,
                    retry_at,
                })) => {
                    tracing::warn!(%error, attempts, %retry_at, "workflows: deadline failed; retried later");
                }
                Ok(None) => return Ok(()),
                Err(error) => {
                    // The row stays as it was: the next poll tries again.
                    tracing::warn!(%error, "workflows: deadlines not fired; next poll");
                    return Ok(());
                }
            }
            if started.elapsed() >= self.engine.config.poll_interval {
                return Ok(());
            }
        }
    }
}

/// Turns the log's wake-ups into permits of `appended`, for as long as its task lives.
///
/// The leader's loop stops waiting for a wake-up whenever a reaction ends; a `Notify` may be
/// given up at any point, while a `PgListener` dropped amid its reconnection would be left
/// connected but not listening.
async fn forward_wakeups(mut wakeups: LogWakeups, appended: Arc<Notify>) {
    loop {
        match wakeups.next().await {
            Ok(()) => appended.notify_one(),
            Err(error) => {
                // The listener reconnects on the next call; the poll covers the gap.
                tracing::warn!(%error, "workflows: log wake-ups failed");
                tokio::time::sleep(WAKEUP_RETRY).await;
            }
        }
    }
}

/// The pause after a failed wake-up before listening again.
const WAKEUP_RETRY: Duration = Duration::from_secs(1);

impl Engine {
    pub(crate) fn links(&self) -> Links {
        Links::new(self.bookkeeping.clone())
    }

    pub(crate) fn deadlines(&self) -> Deadlines {
        Deadlines::new(self.bookkeeping.clone())
    }
}

/// Connections of the bookkeeping pool: a few reactions write links or deadlines at any one
/// time (each holds a connection for one short statement), and firing a deadline holds one
/// while its reaction writes links through another.
const BOOKKEEPING_CONNECTIONS: u32 = 8;

/// A pool on `pool`'s database whose commits do not wait for their WAL flush (see the crate
/// documentation, "Bookkeeping commits"); it connects on first use, and tests a connection
/// before use only if `pool` does.
fn bookkeeping_pool(pool: &PgPool) -> PgPool {
    let options = pool
        .connect_options()
        .as_ref()
        .clone()
        .options([("synchronous_commit", "off")]);
    PgPoolOptions::new()
        .max_connections(BOOKKEEPING_CONNECTIONS)
        .test_before_acquire(pool.options().get_test_before_acquire())
        .connect_lazy_with(options)
}

#[cfg(test)]
mod tests {
    use commerce_devstack::testkit::TestDatabase;
    use sqlx::PgPool;

    use super::Workflows;

    async fn synchronous_commit(pool: &PgPool) -> String {
        sqlx::query_scalar("SHOW synchronous_commit")
            .fetch_one(pool)
            .await
            .expect("setting")
    }

    #[tokio::test]
    async fn given_the_process_managers_then_only_their_bookkeeping_skips_the_flush_wait() {
        let db = TestDatabase::create().await.expect("test database");
        let workflows = Workflows::sandbox_on_store(db.pool().clone());
        assert_eq!(
            synchronous_commit(&workflows.engine.bookkeeping).await,
            "off"
        );
        assert_eq!(synchronous_commit(&workflows.engine.pool).await, "on");
    }
}
