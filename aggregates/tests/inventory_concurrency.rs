//! INV-7 against a real PostgreSQL: many concurrent `Reserve` commands on one inventory stream
//! never reserve more than the stock, in one process (one executor, commands queued per stream)
//! and across two "processes" (two executors with separate caches racing on the database).
//!
//! Needs `DATABASE_URL` (set by `./scripts/test.sh`, or `source .local/devstack.env`).

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use commerce_aggregates::inventory::{self, Inventory, InventoryCommand, StockItem};
use commerce_contracts::ReservationHolder;
use commerce_devstack::testkit::TestDatabase;
use commerce_domain::{LocationId, Quantity, ReservationId, Sku};
use commerce_eventstore::{
    CommandContext, CommandExecutor, EventMetadata, ExecutorConfig, PgEventStore, StreamId, migrate,
};
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;

const TENANT: &str = "acme";
const STOCK: u64 = 10;
const TASKS: u32 = 64;

async fn store() -> (TestDatabase, PgEventStore) {
    let db = TestDatabase::create()
        .await
        .expect("a test database (is DATABASE_URL set?)");
    let pool = PgPoolOptions::new()
        .max_connections(20)
        .connect(db.url())
        .await
        .expect("connect to the test database");
    migrate(&pool).await.expect("migrate");
    (db, PgEventStore::new(pool))
}

fn item() -> StockItem {
    StockItem::new(
        Sku::new("FLASH-1").expect("valid"),
        LocationId::default_location(),
    )
}

fn stream() -> StreamId {
    StreamId::new(TENANT, item().stream_key()).expect("valid stream id")
}

fn context() -> CommandContext {
    CommandContext::new(EventMetadata::new(TENANT, "load-test"))
}

fn executor(store: &PgEventStore) -> CommandExecutor<Inventory> {
    // Generous retries: across processes every lost race is a conflict to retry.
    let config = ExecutorConfig {
        max_attempts: 200,
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(20),
        snapshot_every: 16,
        ..ExecutorConfig::default()
    };
    CommandExecutor::with_config(store.clone(), (), config)
}

fn reserve(n: u32) -> InventoryCommand {
    let at = Utc
        .with_ymd_and_hms(2026, 3, 1, 12, 0, 0)
        .single()
        .expect("valid time");
    InventoryCommand::Reserve {
        item: item(),
        reservation_id: ReservationId::from_uuid(Uuid::from_u128(u128::from(n) + 1)),
        holder: ReservationHolder::Order(Uuid::from_u128(u128::from(n) + 1_000)),
        lines: vec![Quantity::ONE],
        expires_at: at + chrono::Duration::minutes(15),
        at,
    }
}

/// Runs `TASKS` concurrent one-unit reservations spread over `executors` and checks the log.
async fn race(store: &PgEventStore, executors: &[CommandExecutor<Inventory>]) {
    executors[0]
        .execute(
            stream(),
            InventoryCommand::SetStock {
                item: item(),
                on_hand: STOCK,
                reason: "flash sale stock".into(),
                at: Utc::now(),
            },
            context(),
        )
        .await
        .expect("stock set");
    let started = Instant::now();
    let handles: Vec<_> = (0..TASKS)
        .map(|n| {
            let executor = executors[n as usize % executors.len()].clone();
            tokio::spawn(async move { executor.execute(stream(), reserve(n), context()).await })
        })
        .collect();
    let mut reserved = 0;
    let mut insufficient = 0;
    for handle in handles {
        let outcome = handle
            .await
            .expect("task finished")
            .expect("every reservation is answered, none lost to conflicts");
        match outcome.events.as_slice() {
            [event] if event.event_type == "inventory.reserved" => reserved += 1,
            [event] if event.event_type == "inventory.insufficient" => insufficient += 1,
            other => panic!("unexpected events {other:?}"),
        }
    }
    eprintln!(
        "{TASKS} reservations over {} executor(s) answered in {:?}",
        executors.len(),
        started.elapsed()
    );
    assert_eq!(reserved, STOCK, "exactly the stock is reserved");
    assert_eq!(insufficient, u64::from(TASKS) - STOCK);

    // The log agrees: contiguous versions 1..=N, and the fold shows no oversell.
    let events = store
        .load_stream(inventory_type(), &stream())
        .await
        .expect("stream readable");
    let sequences: Vec<u64> = events.iter().map(|e| e.sequence).collect();
    let expected: Vec<u64> = (1..=1 + u64::from(TASKS)).collect();
    assert_eq!(sequences, expected, "stream versions are contiguous");
    let folded = store
        .load_aggregate::<Inventory>(&stream(), None)
        .await
        .expect("fold");
    assert_eq!(folded.version, 1 + u64::from(TASKS));
    assert_eq!(folded.aggregate.on_hand(), STOCK);
    assert_eq!(folded.aggregate.reserved(), STOCK);
    assert_eq!(folded.aggregate.available(), 0);
}

fn inventory_type() -> &'static str {
    <Inventory as cqrs_es::Aggregate>::TYPE
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_reservations_on_ten_units_in_one_process_never_oversell() {
    let (_db, store) = store().await;
    race(&store, &[executor(&store)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_reservations_on_ten_units_across_two_processes_never_oversell() {
    let (_db, store) = store().await;
    race(&store, &[executor(&store), executor(&store)]).await;
}

#[test]
fn the_stream_key_is_sku_colon_location() {
    assert_eq!(
        inventory::stream_key(&item().sku, &item().location),
        "FLASH-1:default"
    );
}
