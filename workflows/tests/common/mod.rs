//! Test harness: a fresh database with the event store and workflow schemas, the executors an
//! API would use, a movable clock, and the workflows runner as a task that can be killed.

#![allow(dead_code)]

use std::future::pending;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use commerce_aggregates::campaign::{Campaign, CampaignCommand, CreateCampaign};
use commerce_aggregates::inventory::{Inventory, InventoryCommand, StockItem};
use commerce_aggregates::order::{LineRequest, Order, OrderCommand, PlaceOrder};
use commerce_aggregates::payment::Payment;
use commerce_aggregates::shipment::{CreateLabel, Shipment, ShipmentCommand};
use commerce_aggregates::{CatalogEntry, InMemoryCatalog};
use commerce_devstack::testkit::TestDatabase;
use commerce_domain::{
    CampaignId, Currency, CustomerId, LocationId, Money, OrderId, ProductId, Quantity, Sku,
    TenantId,
};
use commerce_eventstore::{
    CommandContext, CommandExecutor, EventMetadata, ExecutorConfig, PgEventStore, StreamId,
};
use commerce_workflows::gateway::{
    Carrier, GatewayDecision, GatewayError, Label, LabelRequest, PaymentRequest,
};
use commerce_workflows::{
    Clock, PaymentGateway, SandboxCarrier, SandboxGateway, WorkflowConfig, Workflows,
};
use tokio::task::JoinHandle;

pub const TENANT: &str = "acme";
pub const PRICE: i64 = 1_000;

pub fn eur() -> Currency {
    Currency::from_code("EUR").expect("EUR")
}

pub struct Harness {
    pub store: PgEventStore,
    pub catalog: InMemoryCatalog,
    pub orders: CommandExecutor<Order>,
    pub payments: CommandExecutor<Payment>,
    pub inventory: CommandExecutor<Inventory>,
    pub campaigns: CommandExecutor<Campaign>,
    /// The carrier of every engine this harness starts.
    pub carrier: Arc<RecordingCarrier>,
    offset_secs: Arc<AtomicI64>,
    /// How long the engines trust a payment hold (`WorkflowConfig::hold_validity`).
    pub hold_validity: chrono::Duration,
    /// Last, so the database goes after everything that still uses it.
    pub db: TestDatabase,
}

impl Harness {
    pub async fn new() -> Self {
        let db = TestDatabase::create().await.expect("test database");
        commerce_eventstore::migrate(db.pool())
            .await
            .expect("event store schema");
        commerce_workflows::migrate(db.pool())
            .await
            .expect("workflow schema");
        let store = PgEventStore::new(db.pool().clone());
        let catalog = InMemoryCatalog::new();
        let catalog_arc: Arc<dyn commerce_aggregates::Catalog> = Arc::new(catalog.clone());
        // Many concurrent joins on one campaign stream: retry conflicts generously.
        let hot = ExecutorConfig {
            max_attempts: 50,
            ..ExecutorConfig::default()
        };
        Self {
            orders: CommandExecutor::new(store.clone(), Arc::clone(&catalog_arc)),
            payments: CommandExecutor::new(store.clone(), ()),
            inventory: CommandExecutor::new(store.clone(), ()),
            campaigns: CommandExecutor::with_config(store.clone(), catalog_arc, hot),
            store,
            catalog,
            db,
            carrier: Arc::new(RecordingCarrier::default()),
            offset_secs: Arc::new(AtomicI64::new(0)),
            hold_validity: WorkflowConfig::default().hold_validity,
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::seconds(self.offset_secs.load(Ordering::SeqCst))
    }

    /// Moves the engine's clock forward.
    pub fn advance(&self, by: chrono::Duration) {
        self.offset_secs
            .fetch_add(by.num_seconds(), Ordering::SeqCst);
    }

    pub fn workflows(&self) -> Workflows {
        self.workflows_with(Arc::new(SandboxGateway), 1)
    }

    /// Process managers paying through `gateway`, with `max_payment_attempts` per order.
    pub fn workflows_with(
        &self,
        gateway: Arc<dyn PaymentGateway>,
        max_payment_attempts: u32,
    ) -> Workflows {
        let concurrent_reactions = WorkflowConfig::default().concurrent_reactions;
        self.workflows_reacting(gateway, max_payment_attempts, concurrent_reactions)
    }

    /// [`Self::workflows_with`], with at most `concurrent_reactions` reactions at once.
    pub fn workflows_reacting(
        &self,
        gateway: Arc<dyn PaymentGateway>,
        max_payment_attempts: u32,
        concurrent_reactions: usize,
    ) -> Workflows {
        let offset = Arc::clone(&self.offset_secs);
        // An engine process has a pool of its own: a test that aborts the engine (a crash)
        // drops its connections with it, as a killed process would, instead of handing a
        // connection cut off mid-transaction back to a pool the test and the next engine share.
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(8)
            .connect_lazy_with(self.db.pool().connect_options().as_ref().clone());
        Workflows::new(
            pool,
            Arc::new(self.catalog.clone()),
            gateway,
            Arc::clone(&self.carrier) as Arc<dyn Carrier>,
        )
        .with_config(WorkflowConfig {
            max_payment_attempts,
            poll_interval: Duration::from_millis(50),
            standby_interval: Duration::from_millis(100),
            concurrent_reactions,
            // Closes of a few participants then take several pages, as a flash sale's does.
            close_page: 2,
            hold_validity: self.hold_validity,
            ..WorkflowConfig::default()
        })
        .with_clock(Clock::from_fn(move || {
            Utc::now() + chrono::Duration::seconds(offset.load(Ordering::SeqCst))
        }))
    }

    /// Starts an engine process paying through `gateway`.
    pub fn spawn_with(
        &self,
        gateway: Arc<dyn PaymentGateway>,
        max_payment_attempts: u32,
    ) -> JoinHandle<()> {
        let workflows = self.workflows_with(gateway, max_payment_attempts);
        tokio::spawn(async move {
            workflows.run(pending()).await.expect("workflows run");
        })
    }

    /// Whether the process managers handled every stored event and no deadline is due.
    pub async fn settled(&self) -> bool {
        let behind: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM events e WHERE NOT EXISTS ( \
               SELECT 1 FROM workflow_cursor c \
               WHERE (e.transaction_id::text::bigint, e.position) <= (c.transaction_id, c.position)))",
        )
        .fetch_one(self.db.pool())
        .await
        .expect("cursor query");
        let due: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM deadlines WHERE fired_at IS NULL AND due_at <= $1",
        )
        .bind(self.now())
        .fetch_one(self.db.pool())
        .await
        .expect("deadline query");
        !behind && due == 0
    }

    /// Moves the process managers' cursor back to the start of the log: the next engine
    /// re-runs every reaction on today's state (what a crash, or a previous leader finishing
    /// late, does to one reaction).
    pub async fn rewind_cursor(&self) {
        sqlx::query("UPDATE workflow_cursor SET transaction_id = 0, position = 0")
            .execute(self.db.pool())
            .await
            .expect("rewind");
    }

    pub async fn count_all_events(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(self.db.pool())
            .await
            .expect("count")
    }

    /// Starts an engine process (a task that a test may abort: a crash).
    pub fn spawn(&self) -> JoinHandle<()> {
        let workflows = self.workflows();
        tokio::spawn(async move {
            workflows.run(pending()).await.expect("workflows run");
        })
    }

    fn context(&self) -> CommandContext {
        CommandContext::new(EventMetadata::new(TENANT, "test"))
    }

    fn stream(key: impl Into<String>) -> StreamId {
        StreamId::new(TENANT, key).expect("stream id")
    }

    pub fn product(&self, sku: &str, price: i64) {
        self.catalog.insert(
            TenantId::new(TENANT).expect("tenant"),
            Sku::new(sku).expect("sku"),
            CatalogEntry {
                product_id: ProductId::new(),
                price: Money::new(price, eur()),
                discontinued: false,
            },
        );
    }

    pub async fn stock(&self, sku: &str, on_hand: u64) {
        let item = StockItem::new(Sku::new(sku).expect("sku"), LocationId::default_location());
        self.inventory
            .execute(
                Self::stream(item.stream_key()),
                InventoryCommand::SetStock {
                    item,
                    on_hand,
                    reason: "count".to_owned(),
                    at: self.now(),
                },
                self.context(),
            )
            .await
            .expect("stock set");
    }

    pub async fn place_order(&self, lines: &[(&str, u32)], method: Option<&str>) -> OrderId {
        let order_id = OrderId::new();
        self.orders
            .execute(
                Self::stream(order_id.to_string()),
                OrderCommand::PlaceOrder(PlaceOrder {
                    tenant: TenantId::new(TENANT).expect("tenant"),
                    order_id,
                    customer: CustomerId::new("cust-1").expect("customer"),
                    lines: lines
                        .iter()
                        .map(|(sku, quantity)| LineRequest {
                            sku: Sku::new(*sku).expect("sku"),
                            quantity: Quantity::new(*quantity).expect("quantity"),
                        })
                        .collect(),
                    currency: eur(),
                    payment_method: method.map(str::to_owned),
                    channel: "web".to_owned(),
                    at: self.now(),
                    expires_at: self.now() + chrono::Duration::minutes(30),
                }),
                self.context(),
            )
            .await
            .expect("order placed");
        order_id
    }

    /// The customer `cust-1` canceling an order, now.
    pub fn customer_cancel(&self) -> OrderCommand {
        OrderCommand::Cancel {
            reason: commerce_contracts::events::CancelReason::CustomerRequest,
            note: None,
            by: "cust-1".to_owned(),
            at: self.now(),
        }
    }

    pub async fn order_command(&self, order_id: OrderId, command: OrderCommand) {
        self.orders
            .execute(Self::stream(order_id.to_string()), command, self.context())
            .await
            .expect("order command");
    }

    /// Issues an order command that the order may refuse (it moved on); whether it applied.
    pub async fn try_order_command(&self, order_id: OrderId, command: OrderCommand) -> bool {
        self.orders
            .execute(Self::stream(order_id.to_string()), command, self.context())
            .await
            .is_ok()
    }

    pub async fn create_campaign(
        &self,
        sku: &str,
        min: u32,
        max: u32,
        ends_in: chrono::Duration,
    ) -> CampaignId {
        self.schedule_campaign(sku, min, max, chrono::Duration::seconds(-1), ends_in)
            .await
    }

    /// A campaign that starts `starts_in` from now (negative: already started).
    pub async fn schedule_campaign(
        &self,
        sku: &str,
        min: u32,
        max: u32,
        starts_in: chrono::Duration,
        ends_in: chrono::Duration,
    ) -> CampaignId {
        let campaign_id = CampaignId::new();
        let now = self.now();
        self.campaigns
            .execute(
                Self::stream(campaign_id.to_string()),
                CampaignCommand::Create(CreateCampaign {
                    campaign_id,
                    tenant: TenantId::new(TENANT).expect("tenant"),
                    sku: Sku::new(sku).expect("sku"),
                    location: LocationId::default_location(),
                    group_price: Money::new(PRICE / 2, eur()),
                    original_price: Money::new(PRICE, eur()),
                    min_participants: min,
                    max_participants: max,
                    per_customer_limit: Some(1),
                    per_order_limit: Some(1),
                    virtual_completion_pct: 0,
                    start_time: now + starts_in,
                    end_time: now + ends_in,
                    at: now,
                }),
                self.context(),
            )
            .await
            .expect("campaign created");
        campaign_id
    }

    pub async fn join(
        &self,
        campaign_id: CampaignId,
        customer: &str,
        method: &str,
    ) -> Result<(), String> {
        self.campaigns
            .execute(
                Self::stream(campaign_id.to_string()),
                CampaignCommand::Join {
                    participant_id: commerce_domain::ParticipantId::new(),
                    customer: CustomerId::new(customer).expect("customer"),
                    quantity: Quantity::new(1).expect("quantity"),
                    payment_method: Some(method.to_owned()),
                    at: self.now(),
                },
                self.context(),
            )
            .await
            .map(|_| ())
            .map_err(|error| error.to_string())
    }

    /// Joins as `customer`; the participant's id when admitted.
    pub async fn join_as(
        &self,
        campaign_id: CampaignId,
        customer: &str,
        method: &str,
    ) -> Option<commerce_domain::ParticipantId> {
        let participant_id = commerce_domain::ParticipantId::new();
        self.campaigns
            .execute(
                Self::stream(campaign_id.to_string()),
                CampaignCommand::Join {
                    participant_id,
                    customer: CustomerId::new(customer).expect("customer"),
                    quantity: Quantity::new(1).expect("quantity"),
                    payment_method: Some(method.to_owned()),
                    at: self.now(),
                },
                self.context(),
            )
            .await
            .ok()
            .map(|_| participant_id)
    }

    /// The participant leaves the campaign; whether the campaign let them.
    pub async fn leave(
        &self,
        campaign_id: CampaignId,
        participant_id: commerce_domain::ParticipantId,
    ) -> bool {
        let leave = CampaignCommand::Leave {
            participant_id,
            at: self.now(),
        };
        self.try_campaign_command(campaign_id, leave).await
    }

    /// Issues a campaign command that the campaign may refuse; whether it applied.
    pub async fn try_campaign_command(
        &self,
        campaign_id: CampaignId,
        command: CampaignCommand,
    ) -> bool {
        self.campaigns
            .execute(
                Self::stream(campaign_id.to_string()),
                command,
                self.context(),
            )
            .await
            .is_ok()
    }

    /// Reserves stock directly, as a process manager would (for stock that lands late).
    pub async fn reserve(
        &self,
        sku: &str,
        holder: commerce_contracts::ReservationHolder,
    ) -> commerce_domain::ReservationId {
        let item = StockItem::new(Sku::new(sku).expect("sku"), LocationId::default_location());
        let reservation_id = commerce_domain::ReservationId::new();
        self.inventory
            .execute(
                Self::stream(item.stream_key()),
                InventoryCommand::Reserve {
                    item,
                    reservation_id,
                    holder,
                    lines: vec![Quantity::new(1).expect("quantity")],
                    expires_at: self.now() + chrono::Duration::hours(1),
                    at: self.now(),
                },
                self.context(),
            )
            .await
            .expect("reserved");
        reservation_id
    }

    /// Records a label for `order_id` under a new shipment id, as a carrier's late answer
    /// recorded by a previous leader would be.
    pub async fn record_label(&self, order_id: OrderId) -> commerce_domain::ShipmentId {
        let shipment_id = commerce_domain::ShipmentId::new();
        CommandExecutor::<Shipment>::new(self.store.clone(), ())
            .execute(
                Self::stream(shipment_id.to_string()),
                ShipmentCommand::CreateLabel(CreateLabel {
                    shipment_id,
                    order_id,
                    fulfillment_id: Some(uuid::Uuid::new_v4()),
                    carrier: "sandbox".to_owned(),
                    service: "standard".to_owned(),
                    tracking_number: "SBXLATE".to_owned(),
                    label_url: "https://sandbox.carrier.invalid/labels/SBXLATE.pdf".to_owned(),
                    at: self.now(),
                }),
                self.context(),
            )
            .await
            .expect("label recorded");
        shipment_id
    }

    pub async fn load<A: cqrs_es::Aggregate>(&self, key: impl Into<String>) -> A {
        self.store
            .load_aggregate::<A>(&Self::stream(key), None)
            .await
            .expect("load")
            .aggregate
    }

    pub async fn order(&self, id: OrderId) -> Order {
        self.load(id.to_string()).await
    }

    pub async fn payment(&self, id: commerce_domain::PaymentId) -> Payment {
        self.load(id.to_string()).await
    }

    pub async fn stock_of(&self, sku: &str) -> Inventory {
        self.load(format!("{sku}:default")).await
    }

    pub async fn campaign(&self, id: CampaignId) -> Campaign {
        self.load(id.to_string()).await
    }

    pub async fn shipment_of(&self, order_id: OrderId) -> Option<Shipment> {
        let id: Option<uuid::Uuid> = sqlx::query_scalar(
            "SELECT (payload->>'shipment_id')::uuid FROM events \
             WHERE event_type = 'shipping.label.created' AND payload->>'order_id' = $1",
        )
        .bind(order_id.to_string())
        .fetch_optional(self.db.pool())
        .await
        .expect("shipment query");
        match id {
            Some(id) => Some(self.load(id.to_string()).await),
            None => None,
        }
    }

    pub async fn count_events(&self, event_type: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = $1")
            .bind(event_type)
            .fetch_one(self.db.pool())
            .await
            .expect("count")
    }

    /// The one payment waiting for the customer's action, found in the log (a participant's
    /// payment is on the campaign only once paid).
    pub async fn payment_waiting_for_action(&self) -> commerce_domain::PaymentId {
        let payment_id: String = sqlx::query_scalar(
            "SELECT split_part(aggregate_id, '/', 2) FROM events \
             WHERE event_type = 'payment.requires_action'",
        )
        .fetch_one(self.db.pool())
        .await
        .expect("the waiting payment");
        commerce_domain::PaymentId::from_uuid(payment_id.parse().expect("payment id"))
    }

    /// Σ captured − Σ refunded over an order's payments.
    pub async fn net_paid(&self, order_id: OrderId) -> i64 {
        let order = self.order(order_id).await;
        let mut net = 0;
        for payment_id in order.payment_ids() {
            let payment = self.payment(*payment_id).await;
            net += payment.captured().map_or(0, |m| m.amount_minor())
                - payment.refunded().map_or(0, |m| m.amount_minor());
        }
        net
    }

    /// No participant of the campaign is left paid but unsettled, and every participant's
    /// order has its shipment.
    pub async fn participants_settled(&self, campaign_id: CampaignId) -> bool {
        for p in self.campaign(campaign_id).await.participants() {
            if p.state() == commerce_aggregates::campaign::ParticipantState::Paid {
                return false;
            }
            if let Some(order_id) = p.order_id()
                && self.shipment_of(order_id).await.is_none()
            {
                return false;
            }
        }
        true
    }

    /// Waits until `done` holds, polling; panics after `secs` seconds.
    pub async fn eventually<F, Fut>(&self, secs: u64, what: &str, mut done: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        while tokio::time::Instant::now() < deadline {
            if done().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!("{}", self.trail().await);
        panic!("timed out waiting for {what}");
    }

    /// The whole log, the cursor, parked events and deadlines, for a failure message.
    pub async fn trail(&self) -> String {
        let events: Vec<(String, String, i64, String, String, i64)> = sqlx::query_as(
            "SELECT aggregate_type, aggregate_id, sequence, event_type, \
             transaction_id::text, position FROM events ORDER BY transaction_id, position",
        )
        .fetch_all(self.db.pool())
        .await
        .expect("events");
        let cursor: Option<(i64, i64)> =
            sqlx::query_as("SELECT transaction_id, position FROM workflow_cursor")
                .fetch_optional(self.db.pool())
                .await
                .expect("cursor");
        let parked: Vec<(String, String)> =
            sqlx::query_as("SELECT event_type, reason FROM workflow_dead_letters")
                .fetch_all(self.db.pool())
                .await
                .expect("dead letters");
        let sessions: Vec<(Option<String>, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT state, backend_xid::text, left(query, 120) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_all(self.db.pool())
        .await
        .expect("sessions");
        let mut trail = format!("workflow cursor {cursor:?}, parked {parked:?}\n");
        for session in sessions {
            trail.push_str(&format!("session {session:?}\n"));
        }
        for (kind, id, sequence, event_type, txid, position) in events {
            trail.push_str(&format!(
                "{txid}/{position} {kind}:{id}#{sequence} {event_type}\n"
            ));
        }
        trail
    }
}

/// What the payment provider did, by provider reference: the sandbox's decisions, plus a
/// ledger of the money it moved (each idempotency key once, as a real provider dedupes), so
/// tests can check the provider's side of PAY-4 and ORD-6, not only the Payment aggregates.
///
/// With `fail_after_charge` set, a charge is taken and then answered with an error, like a
/// provider timing out after it charged: the engine must retry and record that same charge.
#[derive(Debug, Default)]
pub struct RecordingGateway {
    ledger: std::sync::Mutex<Ledger>,
    pub fail_after_charge: std::sync::atomic::AtomicBool,
    /// Refund calls that fail before any goes through, like a provider not answering.
    pub refund_outages: std::sync::atomic::AtomicU32,
}

#[derive(Debug, Default)]
struct Ledger {
    keys: std::collections::BTreeSet<String>,
    /// Captured − refunded, per provider reference.
    net: std::collections::BTreeMap<String, i64>,
}

impl RecordingGateway {
    fn book(&self, key: &str, provider_ref: &str, amount: i64) {
        let mut ledger = self.ledger.lock().expect("ledger");
        if ledger.keys.insert(key.to_owned()) {
            *ledger.net.entry(provider_ref.to_owned()).or_default() += amount;
        }
    }

    /// Books a capture the provider made on its own (a customer finishing 3-D Secure after
    /// the engine gave up on the payment).
    pub fn provider_took(&self, key: &str, provider_ref: &str, amount: i64) {
        self.book(key, provider_ref, amount);
    }

    /// Money the provider holds for the merchant: Σ captured − Σ refunded.
    pub fn net_total(&self) -> i64 {
        self.ledger.lock().expect("ledger").net.values().sum()
    }

    /// Provider references with a negative balance or more than `max` captured.
    pub fn out_of_bounds(&self, max: i64) -> Vec<(String, i64)> {
        let ledger = self.ledger.lock().expect("ledger");
        ledger
            .net
            .iter()
            .filter(|(_, net)| **net < 0 || **net > max)
            .map(|(r, net)| (r.clone(), *net))
            .collect()
    }
}

#[async_trait::async_trait]
impl PaymentGateway for RecordingGateway {
    fn name(&self) -> &str {
        SandboxGateway.name()
    }

    async fn authorize(&self, request: &PaymentRequest) -> Result<GatewayDecision, GatewayError> {
        SandboxGateway.authorize(request).await
    }

    async fn charge(&self, request: &PaymentRequest) -> Result<GatewayDecision, GatewayError> {
        let decision = SandboxGateway.charge(request).await?;
        if let GatewayDecision::Approved { provider_ref, .. } = &decision {
            self.book(
                &request.idempotency_key,
                provider_ref,
                request.amount.amount_minor(),
            );
        }
        if self.fail_after_charge.load(Ordering::SeqCst) {
            return Err(GatewayError {
                provider: "sandbox".to_owned(),
                message: "timed out after charging".to_owned(),
            });
        }
        Ok(decision)
    }

    async fn capture(
        &self,
        provider_ref: &str,
        amount: Money,
        idempotency_key: &str,
    ) -> Result<(), GatewayError> {
        self.book(idempotency_key, provider_ref, amount.amount_minor());
        Ok(())
    }

    async fn void(&self, _: &str, _: &str) -> Result<(), GatewayError> {
        Ok(())
    }

    async fn refund(
        &self,
        provider_ref: &str,
        amount: Money,
        idempotency_key: &str,
    ) -> Result<(), GatewayError> {
        outage(&self.refund_outages, "provider")?;
        self.book(idempotency_key, provider_ref, -amount.amount_minor());
        Ok(())
    }
}

/// Fails the call, as `who` not answering, while `outages` is above zero (counting it down).
fn outage(outages: &std::sync::atomic::AtomicU32, who: &str) -> Result<(), GatewayError> {
    match outages.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
        left.checked_sub(1)
    }) {
        Ok(_) => Err(GatewayError {
            provider: "sandbox".to_owned(),
            message: format!("{who} not answering"),
        }),
        Err(_) => Ok(()),
    }
}

/// The sandbox carrier, remembering which labels it was asked to void (each idempotency key
/// once, as a real carrier dedupes). With `void_outages` above zero, that many void calls
/// fail first, like a carrier that does not answer.
#[derive(Debug, Default)]
pub struct RecordingCarrier {
    voids: std::sync::Mutex<std::collections::BTreeMap<String, String>>,
    pub void_outages: std::sync::atomic::AtomicU32,
    pub void_calls: std::sync::atomic::AtomicU32,
}

impl RecordingCarrier {
    /// Tracking numbers voided, once per idempotency key.
    pub fn voided(&self) -> Vec<String> {
        self.voids
            .lock()
            .expect("voids")
            .values()
            .cloned()
            .collect()
    }
}

#[async_trait::async_trait]
impl Carrier for RecordingCarrier {
    async fn create_label(&self, request: &LabelRequest) -> Result<Label, GatewayError> {
        SandboxCarrier.create_label(request).await
    }

    async fn void_label(
        &self,
        tracking_number: &str,
        idempotency_key: &str,
    ) -> Result<(), GatewayError> {
        self.void_calls.fetch_add(1, Ordering::SeqCst);
        outage(&self.void_outages, "carrier")?;
        self.voids
            .lock()
            .expect("voids")
            .entry(idempotency_key.to_owned())
            .or_insert_with(|| tracking_number.to_owned());
        Ok(())
    }
}

/// What a [`Hooked`] sandbox does before each charge.
pub trait ChargeHook: std::fmt::Debug + Send + Sync {
    fn before_charge(&self) -> impl std::future::Future<Output = ()> + Send;
}

/// The sandbox gateway, with a [`ChargeHook`] run before each charge.
#[derive(Debug, Default)]
pub struct Hooked<H>(pub H);

#[async_trait::async_trait]
impl<H: ChargeHook> PaymentGateway for Hooked<H> {
    fn name(&self) -> &str {
        SandboxGateway.name()
    }

    async fn authorize(&self, request: &PaymentRequest) -> Result<GatewayDecision, GatewayError> {
        SandboxGateway.authorize(request).await
    }

    async fn charge(&self, request: &PaymentRequest) -> Result<GatewayDecision, GatewayError> {
        self.0.before_charge().await;
        SandboxGateway.charge(request).await
    }

    async fn capture(&self, reference: &str, amount: Money, key: &str) -> Result<(), GatewayError> {
        SandboxGateway.capture(reference, amount, key).await
    }

    async fn void(&self, reference: &str, key: &str) -> Result<(), GatewayError> {
        SandboxGateway.void(reference, key).await
    }

    async fn refund(&self, reference: &str, amount: Money, key: &str) -> Result<(), GatewayError> {
        SandboxGateway.refund(reference, amount, key).await
    }
}

/// Counts how many charges run at once: each charge waits (up to [`Overlap::PATIENCE`]) for
/// a second one to arrive, so two reactions that can run side by side are seen doing so,
/// whatever the machine's speed.
#[derive(Debug, Default)]
pub struct Overlap {
    in_flight: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
    arrived: tokio::sync::Notify,
}

impl Overlap {
    pub const PATIENCE: Duration = Duration::from_millis(500);

    /// The most charges that were ever in flight at once.
    pub fn most_at_once(&self) -> usize {
        self.most.load(Ordering::SeqCst)
    }
}

impl ChargeHook for Overlap {
    async fn before_charge(&self) {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        self.arrived.notify_waiters();
        let _ = tokio::time::timeout(Self::PATIENCE, async {
            while self.most.load(Ordering::SeqCst) < 2 {
                self.arrived.notified().await;
            }
        })
        .await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Holds the first charge at the provider until [`Gate::release`]: a reaction stuck for as
/// long as the test likes. Later charges pass.
#[derive(Debug, Default)]
pub struct Gate {
    first_taken: std::sync::atomic::AtomicBool,
    holding: std::sync::atomic::AtomicBool,
    released: tokio::sync::Notify,
}

impl Gate {
    /// Whether the first charge is being held now.
    pub fn holding(&self) -> bool {
        self.holding.load(Ordering::SeqCst)
    }

    pub fn release(&self) {
        self.released.notify_one();
    }
}

impl ChargeHook for Gate {
    async fn before_charge(&self) {
        if !self.first_taken.swap(true, Ordering::SeqCst) {
            self.holding.store(true, Ordering::SeqCst);
            self.released.notified().await;
            self.holding.store(false, Ordering::SeqCst);
        }
    }
}
