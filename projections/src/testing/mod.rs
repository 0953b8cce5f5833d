//! Test support: random but valid event histories of every aggregate, an in-memory event source
//! for rebuilds, and read-model dumps to compare two schemas.

use chrono::{DateTime, Duration, TimeZone, Utc};
use commerce_contracts::events::*;
use commerce_contracts::{LineQuantity, Money, OrderLine, ReservationHolder};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::event::EventRecord;
use crate::rebuild::EventSource;

/// A rebuild source over an in-memory log, in its order.
pub struct VecSource<I>(pub I);

#[async_trait::async_trait]
impl<I: Iterator<Item = EventRecord> + ExactSizeIterator + Send> EventSource for VecSource<I> {
    async fn next_batch(
        &mut self,
        max: usize,
    ) -> Result<Vec<EventRecord>, Box<dyn std::error::Error + Send + Sync>> {
        Ok(self.0.by_ref().take(max).collect())
    }

    async fn estimated_total(&mut self) -> Option<u64> {
        Some(self.0.len() as u64)
    }
}

/// A small deterministic generator (xorshift64*), so a history is reproducible from its seed.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn uuid(&mut self) -> Uuid {
        Uuid::from_u64_pair(self.next(), self.next())
    }
}

fn eur(amount_minor: i64) -> Money {
    Money {
        amount_minor,
        currency: "EUR".into(),
    }
}

/// Builds the streams of a history; [`History::interleave`] gives the global log.
#[derive(Debug, Default)]
pub struct History {
    streams: Vec<Vec<EventRecord>>,
    clock: i64,
}

impl History {
    fn at(&mut self) -> DateTime<Utc> {
        self.clock += 1;
        Utc.timestamp_opt(1_767_225_600, 0)
            .single()
            .unwrap_or_default()
            + Duration::seconds(self.clock)
            // Finer than PostgreSQL keeps, as `Utc::now()` gives: both paths must store the same.
            + Duration::nanoseconds(123_456_789)
    }

    fn stream(
        &mut self,
        tenant: &str,
        aggregate_type: &str,
        aggregate_id: &str,
        events: Vec<Value>,
    ) {
        let mut records = Vec::with_capacity(events.len());
        for (index, payload) in events.into_iter().enumerate() {
            let occurred_at = self.at();
            records.push(EventRecord {
                event_id: Uuid::new_v4(),
                event_type: payload["event_type"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                aggregate_type: aggregate_type.to_owned(),
                aggregate_id: aggregate_id.to_owned(),
                sequence: i64::try_from(index).unwrap_or(0) + 1,
                position: 0,
                tenant_id: tenant.to_owned(),
                timestamp: occurred_at.timestamp_millis(),
                occurred_at,
                payload,
            });
        }
        self.streams.push(records);
    }

    /// A random valid history over two tenants.
    pub fn random(rng: &mut Rng, size: u64) -> Self {
        let mut history = Self::default();
        for n in 0..size {
            let tenant = if rng.chance(50) {
                "tenant-a"
            } else {
                "tenant-b"
            };
            let sku = format!("SKU-{}", rng.below(3));
            match rng.below(4) {
                0 => history.product(rng, tenant, &format!("{sku}-{n}")),
                1 => history.inventory(rng, tenant, &format!("{sku}:loc-{n}")),
                2 => history.order(rng, tenant, &sku),
                _ => history.campaign(rng, tenant, &sku),
            }
        }
        history
    }

    fn product(&mut self, rng: &mut Rng, tenant: &str, sku: &str) {
        let at = self.at();
        let mut events = vec![to_json(&ProductEvent::Created(ProductCreated {
            product_id: rng.uuid(),
            sku: sku.into(),
            name: "Thing".into(),
            description: None,
            price: eur(1999),
            created_at: at,
        }))];
        if rng.chance(50) {
            events.push(to_json(&ProductEvent::PriceChanged(ProductPriceChanged {
                price: eur(2499),
                previous: eur(1999),
                at,
            })));
        }
        // From the stream key, not `rng`, so the other tests' histories stay what they were.
        if sku.len().is_multiple_of(2) {
            events.push(to_json(&ProductEvent::DetailsChanged(
                ProductDetailsChanged {
                    name: "Better thing".into(),
                    description: Some("renamed".into()),
                    at,
                },
            )));
        }
        if rng.chance(30) {
            events.push(to_json(&ProductEvent::Discontinued(ProductDiscontinued {
                at,
            })));
        }
        self.stream(tenant, "product", sku, events);
    }

    fn inventory(&mut self, rng: &mut Rng, tenant: &str, key: &str) {
        let (sku, location) = key.split_once(':').unwrap_or((key, "main"));
        let at = self.at();
        let mut on_hand = 10 + rng.below(20);
        let mut events = vec![to_json(&InventoryEvent::Received(InventoryReceived {
            sku: sku.into(),
            location: location.into(),
            quantity: on_hand,
            on_hand_after: on_hand,
            at,
        }))];
        let mut active: Vec<(Uuid, u32)> = Vec::new();
        let mut reserved = 0_u64;
        for _ in 0..rng.below(8) {
            match rng.below(4) {
                0 => {
                    let quantity = 1 + rng.below(4);
                    on_hand += quantity;
                    events.push(to_json(&InventoryEvent::Received(InventoryReceived {
                        sku: sku.into(),
                        location: location.into(),
                        quantity,
                        on_hand_after: on_hand,
                        at,
                    })));
                }
                1 if on_hand - reserved >= 3 => {
                    let quantity = 1 + u32::try_from(rng.below(3)).unwrap_or(0);
                    let id = rng.uuid();
                    reserved += u64::from(quantity);
                    active.push((id, quantity));
                    events.push(to_json(&InventoryEvent::Reserved(InventoryReserved {
                        reservation_id: id,
                        sku: sku.into(),
                        location: location.into(),
                        quantity,
                        holder: ReservationHolder::Order(rng.uuid()),
                        expires_at: at,
                        at,
                    })));
                }
                2 if !active.is_empty() => {
                    let (id, quantity) = active.remove(0);
                    reserved -= u64::from(quantity);
                    events.push(to_json(&InventoryEvent::Released(InventoryReleased {
                        reservation_id: id,
                        quantity,
                        reason: "test".into(),
                        at,
                    })));
                }
                3 if !active.is_empty() => {
                    let (id, quantity) = active.remove(0);
                    reserved -= u64::from(quantity);
                    on_hand -= u64::from(quantity);
                    events.push(to_json(&InventoryEvent::Committed(InventoryCommitted {
                        reservation_id: id,
                        quantity,
                        released_remainder: 0,
                        on_hand_after: on_hand,
                        at,
                    })));
                }
                _ => {}
            }
        }
        self.stream(tenant, "inventory", key, events);
    }

    fn order(&mut self, rng: &mut Rng, tenant: &str, sku: &str) {
        let order_id = rng.uuid();
        let at = self.at();
        let lines: Vec<OrderLine> = (1..=1 + u32::try_from(rng.below(3)).unwrap_or(0))
            .map(|line_no| OrderLine {
                line_no,
                sku: format!("{sku}-{line_no}"),
                product_id: None,
                quantity: line_no,
                unit_price: eur(500),
            })
            .collect();
        let total: i64 = lines.iter().map(|l| i64::from(l.quantity) * 500).sum();
        let all: Vec<LineQuantity> = lines
            .iter()
            .map(|l| LineQuantity {
                line_no: l.line_no,
                quantity: l.quantity,
            })
            .collect();
        let customer = format!("customer-{}", rng.below(3));
        let mut events = vec![to_json(&OrderEvent::Created(OrderCreated {
            order_id,
            customer_id: customer.clone(),
            lines,
            currency: "EUR".into(),
            total: eur(total),
            payment_method: Some("pm_card_ok".into()),
            campaign_id: None,
            participant_id: None,
            channel: "web".into(),
            expires_at: at,
            placed_at: at,
        }))];
        let steps = rng.below(8);
        let payment_id = rng.uuid();
        let fulfillment_id = rng.uuid();
        let canceled_at = if rng.chance(30) {
            rng.below(4)
        } else {
            u64::MAX
        };
        for step in 0..steps {
            if step == canceled_at {
                events.push(to_json(&OrderEvent::Canceled(OrderCanceled {
                    reason: CancelReason::CustomerRequest,
                    note: None,
                    canceled_by: customer.clone(),
                    canceled_at: at,
                })));
                break;
            }
            events.push(to_json(&match step {
                0 => OrderEvent::StockReserved(OrderStockReserved {
                    reservations: vec![],
                    reserved_at: at,
                }),
                1 => OrderEvent::AwaitingPayment(OrderAwaitingPayment {
                    payment_id,
                    amount: eur(total),
                    requested_at: at,
                }),
                2 => OrderEvent::Confirmed(OrderConfirmed {
                    payment_id,
                    covered: eur(total),
                    confirmed_at: at,
                }),
                3 => OrderEvent::FulfillmentCreated(OrderFulfillmentCreated {
                    fulfillment_id,
                    lines: all.clone(),
                    location: "main".into(),
                    created_at: at,
                }),
                4 => OrderEvent::Shipped(OrderShipped {
                    fulfillment_id,
                    lines: all.clone(),
                    shipped_at: at,
                }),
                5 => OrderEvent::Delivered(OrderDelivered {
                    fulfillment_id,
                    lines: all.clone(),
                    delivered_at: at,
                }),
                _ => OrderEvent::Completed(OrderCompleted { completed_at: at }),
            }));
        }
        self.stream(tenant, "order", &order_id.to_string(), events);
        if steps >= 2 {
            self.payment(rng, tenant, order_id, payment_id, total, &customer);
        }
        if steps >= 5 && canceled_at == u64::MAX {
            self.shipment(rng, tenant, order_id, fulfillment_id);
        }
    }

    fn payment(
        &mut self,
        rng: &mut Rng,
        tenant: &str,
        order_id: Uuid,
        payment_id: Uuid,
        total: i64,
        customer: &str,
    ) {
        let at = self.at();
        let mut events = vec![to_json(&PaymentEvent::Created(PaymentCreated {
            payment_id,
            purpose: PaymentPurpose::Order { order_id },
            customer_id: customer.into(),
            amount: eur(total),
            method: "pm_card_ok".into(),
            provider: "sandbox".into(),
            capture_policy: CapturePolicy::Automatic,
            created_at: at,
        }))];
        if rng.chance(20) {
            events.push(to_json(&PaymentEvent::Failed(PaymentFailed {
                reason: "declined".into(),
                provider_ref: None,
                at,
            })));
        } else {
            events.push(to_json(&PaymentEvent::Authorized(PaymentAuthorized {
                amount: eur(total),
                provider_ref: "ref".into(),
                auth_expires_at: at,
                at,
            })));
            events.push(to_json(&PaymentEvent::Succeeded(PaymentSucceeded {
                amount: eur(total),
                at,
            })));
            if rng.chance(30) {
                let refund_id = rng.uuid();
                events.push(to_json(&PaymentEvent::RefundRequested(
                    PaymentRefundRequested {
                        refund_id,
                        amount: eur(100),
                        reason: "damaged".into(),
                        at,
                    },
                )));
                events.push(to_json(&PaymentEvent::Refunded(PaymentRefunded {
                    refund_id,
                    amount: eur(100),
                    total_refunded: eur(100),
                    at,
                })));
            }
        }
        self.stream(tenant, "payment", &payment_id.to_string(), events);
    }

    fn shipment(&mut self, rng: &mut Rng, tenant: &str, order_id: Uuid, fulfillment_id: Uuid) {
        let at = self.at();
        let shipment_id = rng.uuid();
        let mut events = vec![to_json(&ShipmentEvent::LabelCreated(
            ShippingLabelCreated {
                shipment_id,
                order_id,
                fulfillment_id: Some(fulfillment_id),
                carrier: "dhl".into(),
                service: "standard".into(),
                tracking_number: "TRACK".into(),
                label_url: "https://labels.example/1".into(),
                created_at: at,
            },
        ))];
        events.push(to_json(&ShipmentEvent::Shipped(ShipmentShipped { at })));
        if rng.chance(50) {
            events.push(to_json(&ShipmentEvent::Delivered(ShipmentDelivered { at })));
        } else if shipment_id.as_u64_pair().0.is_multiple_of(2) {
            events.push(to_json(&ShipmentEvent::Canceled(ShipmentCanceled {
                reason: "lost".into(),
                at,
            })));
        }
        self.stream(tenant, "shipment", &shipment_id.to_string(), events);
    }

    fn campaign(&mut self, rng: &mut Rng, tenant: &str, sku: &str) {
        let at = self.at();
        let campaign_id = rng.uuid();
        let mut events = vec![
            to_json(&CampaignEvent::Created(CampaignCreated {
                campaign_id,
                sku: sku.into(),
                product_id: None,
                location: "main".into(),
                group_price: eur(800),
                original_price: eur(1000),
                min_participants: 2,
                max_participants: 5,
                per_customer_limit: 1,
                per_order_limit: 1,
                virtual_completion_pct: 0,
                start_time: at,
                end_time: at,
                created_at: at,
            })),
            to_json(&CampaignEvent::Started(CampaignStarted { at })),
        ];
        let mut paid = 0_u32;
        let mut paid_ids = Vec::new();
        for n in 0..rng.below(5) {
            let participant_id = rng.uuid();
            events.push(to_json(&CampaignEvent::Joined(CampaignJoined {
                participant_id,
                customer_id: format!("c{n}"),
                quantity: 1,
                unit_price: eur(800),
                amount: eur(800),
                payment_method: None,
                joined_at: at,
            })));
            match rng.below(3) {
                0 => {
                    events.push(to_json(&CampaignEvent::ParticipantPaid(
                        CampaignParticipantPaid {
                            participant_id,
                            payment_id: rng.uuid(),
                            amount: eur(800),
                            became_leader: paid == 0,
                            at,
                        },
                    )));
                    paid += 1;
                    paid_ids.push(participant_id);
                }
                1 => events.push(to_json(&CampaignEvent::ParticipantDropped(
                    CampaignParticipantDropped {
                        participant_id,
                        reason: "payment failed".into(),
                        at,
                    },
                ))),
                _ => {}
            }
        }
        if paid >= 2 {
            events.push(to_json(&CampaignEvent::Successful(CampaignSuccessful {
                paid_participants: paid,
                is_virtual: false,
                at,
            })));
        }
        // Later participant moves: the first paid one leaves (handing the lead on), the others
        // order or are refunded. Chosen from the ids, not `rng`, so the histories the other
        // tests generate from their seeds stay what they were.
        for (n, &participant_id) in paid_ids.iter().enumerate() {
            let pick = participant_id.as_u64_pair().0;
            let derived = Uuid::from_u64_pair(pick, !pick);
            events.push(to_json(&match (n, pick % 3) {
                (0, _) => CampaignEvent::ParticipantLeft(CampaignParticipantLeft {
                    participant_id,
                    new_leader: paid_ids.get(1).copied(),
                    at,
                }),
                (_, 0) => CampaignEvent::ParticipantOrdered(CampaignParticipantOrdered {
                    participant_id,
                    order_id: derived,
                    at,
                }),
                (_, 1) => CampaignEvent::ParticipantRefunded(CampaignParticipantRefunded {
                    participant_id,
                    payment_id: pick.is_multiple_of(2).then_some(derived),
                    at,
                }),
                _ => continue,
            }));
        }
        self.stream(tenant, "campaign", &campaign_id.to_string(), events);
    }

    /// One global log: the streams interleaved at random, each in its own order, with positions.
    pub fn interleave(&self, rng: &mut Rng) -> Vec<EventRecord> {
        let mut cursors = vec![0_usize; self.streams.len()];
        let mut log = Vec::new();
        loop {
            let open: Vec<usize> = (0..self.streams.len())
                .filter(|&s| cursors[s] < self.streams[s].len())
                .collect();
            if open.is_empty() {
                return log;
            }
            let pick = open[usize::try_from(rng.below(open.len() as u64)).unwrap_or(0)];
            let mut record = self.streams[pick][cursors[pick]].clone();
            cursors[pick] += 1;
            record.position = i64::try_from(log.len()).unwrap_or(0) + 1;
            log.push(record);
        }
    }
}

fn to_json<T: serde::Serialize>(event: &T) -> Value {
    serde_json::to_value(event).expect("contract events serialise")
}

/// Every read-model table of `schema` as JSON, rows sorted; bookkeeping clocks left out.
pub async fn dump(conn: &mut PgConnection, schema: &str) -> Value {
    let tables = [
        "stream_state",
        "pending_events",
        "products",
        "inventory_levels",
        "orders",
        "order_lines",
        "order_status_history",
        "payments",
        "shipments",
        "campaigns",
        "campaign_participants",
        "daily_sales",
    ];
    let mut out = serde_json::Map::new();
    for table in tables {
        let rows: Value = sqlx::query_scalar(&format!(
            "SELECT coalesce(jsonb_agg(r ORDER BY r::text), '[]'::jsonb) FROM (
                 SELECT to_jsonb(t) - 'received_at' - CASE WHEN '{table}' = 'stream_state' THEN 'updated_at' ELSE '' END AS r
                 FROM {schema}.{table} t) x"
        ))
        .fetch_one(&mut *conn)
        .await
        .expect("dump a read-model table");
        out.insert(table.to_owned(), rows);
    }
    Value::Object(out)
}
