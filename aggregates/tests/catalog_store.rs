//! The catalog read from the event store: products written through the executor, a stored
//! `product.created` v1 row read through the upcaster, and a campaign whose creation asks the
//! [`StoreCatalog`]. Real PostgreSQL (`DATABASE_URL`).

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use commerce_aggregates::campaign::{Campaign, CampaignCommand, CampaignStatus, CreateCampaign};
use commerce_aggregates::product::{self, Product, ProductCommand};
use commerce_aggregates::{Catalog, CatalogEntry, CommandError, StoreCatalog};
use commerce_devstack::testkit::TestDatabase;
use commerce_domain::{CampaignId, Currency, LocationId, Money, ProductId, Sku, TenantId};
use commerce_eventstore::{
    CommandContext, CommandExecutor, EventMetadata, ExecuteError, PgEventStore, StreamId, migrate,
};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

const TENANT: &str = "acme";

async fn pool() -> (TestDatabase, PgPool) {
    let db = TestDatabase::create()
        .await
        .expect("a test database (is DATABASE_URL set?)");
    let pool = PgPool::connect(db.url())
        .await
        .expect("connect to the test database");
    migrate(&pool).await.expect("migrate");
    (db, pool)
}

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0)
        .single()
        .expect("valid time")
}

fn tenant() -> TenantId {
    TenantId::new(TENANT).expect("valid")
}

fn sku(code: &str) -> Sku {
    Sku::new(code).expect("valid")
}

fn context() -> CommandContext {
    CommandContext::new(EventMetadata::new(TENANT, "operator"))
}

fn eur(minor: i64) -> Money {
    Money::new(minor, Currency::Eur)
}

async fn create_product(store: &PgEventStore, code: &str, id: u128, price: Money) {
    CommandExecutor::<Product>::new(store.clone(), ())
        .execute(
            StreamId::new(TENANT, product::stream_key(&sku(code))).expect("valid"),
            ProductCommand::Create {
                product_id: ProductId::from_uuid(Uuid::from_u128(id)),
                sku: sku(code),
                name: "Red tee".into(),
                description: None,
                price,
                at: at(),
            },
            context(),
        )
        .await
        .expect("product created");
}

#[tokio::test]
async fn a_product_written_through_the_executor_is_in_the_store_catalog() {
    let (_db, pool) = pool().await;
    let store = PgEventStore::new(pool).with_upcasters(product::upcasters());
    create_product(&store, "TEE-RED", 1, eur(1999)).await;
    let catalog = StoreCatalog::new(store);

    let entry = catalog.product(&tenant(), &sku("TEE-RED")).await;

    assert_eq!(
        entry,
        Some(CatalogEntry {
            product_id: ProductId::from_uuid(Uuid::from_u128(1)),
            price: eur(1999),
            discontinued: false,
        })
    );
    assert_eq!(catalog.product(&tenant(), &sku("NOPE")).await, None);
    let other = TenantId::new("other").expect("valid");
    assert_eq!(catalog.product(&other, &sku("TEE-RED")).await, None);
}

#[tokio::test]
async fn a_stored_v1_product_created_event_is_read_as_v2() {
    let (_db, pool) = pool().await;
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('product', 'acme/OLD-1', 1, 'product.created', '1', $1, $2)",
    )
    .bind(json!({
        "event_type": "product.created",
        "product_id": Uuid::from_u128(2),
        "sku": "OLD-1",
        "name": "Legacy mug",
        "description": null,
        "price_minor": 1250,
        "currency": "EUR",
        "created_at": at(),
    }))
    .bind(json!({"tenant_id": TENANT}))
    .execute(&pool)
    .await
    .expect("v1 row inserted");
    let store = PgEventStore::new(pool).with_upcasters(product::upcasters());

    let entry = StoreCatalog::new(store.clone())
        .lookup(&tenant(), &sku("OLD-1"))
        .await
        .expect("readable");
    let folded = store
        .load_aggregate::<Product>(&StreamId::new(TENANT, "OLD-1").expect("valid"), None)
        .await
        .expect("fold");

    assert_eq!(entry.map(|e| e.price), Some(eur(1250)));
    assert_eq!(folded.aggregate.name(), "Legacy mug");
    assert_eq!(folded.aggregate.price(), Some(eur(1250)));
    // A later command appends v2 events after the v1 one.
    CommandExecutor::<Product>::new(store.clone(), ())
        .execute(
            StreamId::new(TENANT, "OLD-1").expect("valid"),
            ProductCommand::ChangePrice {
                price: eur(1500),
                at: at(),
            },
            context(),
        )
        .await
        .expect("price changed on an upcast stream");
}

#[tokio::test]
async fn a_campaign_is_created_only_for_a_product_in_the_store_catalog() {
    let (_db, pool) = pool().await;
    let store = PgEventStore::new(pool).with_upcasters(product::upcasters());
    create_product(&store, "TEE-RED", 1, eur(2000)).await;
    let catalog: Arc<dyn Catalog> = Arc::new(StoreCatalog::new(store.clone()));
    let campaigns = CommandExecutor::<Campaign>::new(store.clone(), catalog);
    let create = |code: &str, id: u128| {
        CampaignCommand::Create(CreateCampaign {
            campaign_id: CampaignId::from_uuid(Uuid::from_u128(id)),
            tenant: tenant(),
            sku: sku(code),
            location: LocationId::default_location(),
            group_price: eur(1500),
            original_price: eur(2000),
            min_participants: 2,
            max_participants: 4,
            per_customer_limit: None,
            per_order_limit: None,
            virtual_completion_pct: 0,
            start_time: at(),
            end_time: at() + chrono::Duration::days(1),
            at: at(),
        })
    };
    let stream = |id: u128| StreamId::new(TENANT, Uuid::from_u128(id).to_string()).expect("valid");

    let outcome = campaigns
        .execute(stream(10), create("TEE-RED", 10), context())
        .await
        .expect("created");
    let refused = campaigns
        .execute(stream(11), create("NOPE", 11), context())
        .await;

    assert_eq!(outcome.events.len(), 2, "created and started");
    assert!(matches!(
        refused,
        Err(ExecuteError::Domain(CommandError::Invalid { ref field, .. })) if field == "sku"
    ));
    let folded = store
        .load_aggregate::<Campaign>(&stream(10), None)
        .await
        .expect("fold");
    assert_eq!(folded.aggregate.status(), CampaignStatus::Active);
}
