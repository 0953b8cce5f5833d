//! Set-based application of a batch of events, the rebuild's and the live workers' path: the
//! same rules as [`Projector::project`], with a constant number of statements per batch instead
//! of several per event.
//!
//! Events that queue analyst records (orders and payments, for a live projector) go one by one:
//! an order's summary is read back from the read models after each of its changes. The others
//! are planned together: their streams are read from `stream_state` with one statement, and when
//! every event is either its stream's next one or a duplicate (the rebuild's source is the
//! gap-free global log, so always there; a live worker's partitions nearly always), the events
//! are grouped by read model; each model reads the rows the batch touches with one statement per
//! table (not those of streams the batch begins: a stream's first event creates its rows), folds
//! the events into them in memory with the pure rules its per-event path uses, and writes each
//! table with one statement; `stream_state` is then written once for all streams.
//! Anything else (a gap, a blocked stream, events parked in `pending_events`) takes the
//! per-event path for the whole group, so nothing is ever applied out of order.

use std::collections::HashMap;

use commerce_contracts::events::{
    CampaignEvent, InventoryEvent, OrderEvent, PaymentEvent, ProductEvent, ShipmentEvent,
};
use sqlx::PgConnection;

use super::{
    Outcome, Projector, StreamKey, campaign, inventory, order, payment, product, shipment,
};
use crate::error::ProjectionError;
use crate::event::{AggregateEvent, DecodedEvent, EventRecord};

/// The events of one read model to apply, in log order.
pub(super) type Events<'a, E> = Vec<(&'a EventRecord, &'a E)>;

/// Whether the read models may already hold rows of `record`'s stream, so that a batch must read
/// them: not for a stream's first event, which creates them (only applicable events reach the
/// models, never a redelivered first event).
pub(super) fn continues_stream(record: &EventRecord) -> bool {
    record.sequence > 1
}

/// The applicable events of a batch, per read model.
#[derive(Default)]
struct Models<'a> {
    orders: Events<'a, OrderEvent>,
    payments: Events<'a, PaymentEvent>,
    inventory: Events<'a, InventoryEvent>,
    campaigns: Events<'a, CampaignEvent>,
    products: Events<'a, ProductEvent>,
    shipments: Events<'a, ShipmentEvent>,
}

impl Projector {
    /// Applies `events` (in log order) like [`Projector::project`] applied to each in turn would,
    /// set-based where the batch allows it (see the module documentation), and says what
    /// happened to each event (`Applied` never counts drained events on the set-based path,
    /// which only runs when nothing is parked).
    pub(crate) async fn project_batch(
        &self,
        conn: &mut PgConnection,
        events: &[DecodedEvent],
    ) -> Result<Vec<Outcome>, ProjectionError> {
        let mut outcomes = vec![Outcome::Duplicate; events.len()];
        // Streams never span aggregate types and each model writes only its own tables, so the
        // two groups may go one after the other; within each, log order is kept.
        let (one_by_one, set_based): (Vec<usize>, Vec<usize>) =
            (0..events.len()).partition(|&index| self.queues_analytics(&events[index]));
        for index in one_by_one {
            outcomes[index] = self.project(conn, &events[index]).await?;
        }
        let selected: Vec<&DecodedEvent> = set_based.iter().map(|&index| &events[index]).collect();
        if selected.is_empty() {
            return Ok(outcomes);
        }
        let Some((applicable, last)) = plan(&selected, streams(conn, &selected).await?) else {
            for (&index, event) in set_based.iter().zip(&selected) {
                outcomes[index] = self.project(conn, event).await?;
            }
            return Ok(outcomes);
        };
        let mut models = Models::default();
        for &position in &applicable {
            let event = selected[position];
            outcomes[set_based[position]] = Outcome::Applied { drained: 0 };
            let record = &event.record;
            match &event.event {
                AggregateEvent::Order(e) => models.orders.push((record, e)),
                AggregateEvent::Payment(e) => models.payments.push((record, e)),
                AggregateEvent::Inventory(e) => models.inventory.push((record, e)),
                AggregateEvent::Campaign(e) => models.campaigns.push((record, e)),
                AggregateEvent::Product(e) => models.products.push((record, e)),
                AggregateEvent::Shipment(e) => models.shipments.push((record, e)),
            }
        }
        inventory::apply_batch(conn, &models.inventory).await?;
        campaign::apply_batch(conn, &models.campaigns).await?;
        order::apply_batch(conn, &models.orders).await?;
        payment::apply_batch(conn, &models.payments).await?;
        product::apply_batch(conn, &models.products).await?;
        shipment::apply_batch(conn, &models.shipments).await?;
        save_streams(conn, &last).await?;
        Ok(outcomes)
    }
}

/// Where a stream of the batch stands: its last applied sequence, and whether it is irregular
/// (blocked, or with events parked).
struct Stream {
    last_sequence: i64,
    irregular: bool,
}

/// The stored state of the batch's streams (those without a row are absent).
async fn streams(
    conn: &mut PgConnection,
    events: &[&DecodedEvent],
) -> Result<HashMap<StreamKey, Stream>, ProjectionError> {
    let mut keys: Vec<StreamKey> = events
        .iter()
        .map(|event| StreamKey::of(&event.record))
        .collect();
    keys.sort_by(|a, b| {
        (&a.tenant_id, &a.aggregate_type, &a.aggregate_id).cmp(&(
            &b.tenant_id,
            &b.aggregate_type,
            &b.aggregate_id,
        ))
    });
    keys.dedup();
    let (tenants, types, ids) = columns(keys.iter());
    // One index probe per key, as in `Table::fetch` and for the same reason: as a plain join the
    // planner hashed the whole of `stream_state` for every batch (82 ms a batch at 300,000
    // streams, against 9 ms probed), so a batch cost as much as the store had streams.
    let rows: Vec<(String, String, String, i64, bool)> = sqlx::query_as(
        "SELECT s.tenant_id, s.aggregate_type, s.aggregate_id, s.last_sequence,
                s.blocked_by IS NOT NULL OR EXISTS (SELECT 1 FROM pending_events p
                    WHERE p.tenant_id = s.tenant_id AND p.aggregate_type = s.aggregate_type
                        AND p.aggregate_id = s.aggregate_id)
         FROM unnest($1::text[], $2::text[], $3::text[]) AS k(tenant_id, aggregate_type, aggregate_id)
         CROSS JOIN LATERAL (SELECT * FROM stream_state s WHERE s.tenant_id = k.tenant_id
             AND s.aggregate_type = k.aggregate_type AND s.aggregate_id = k.aggregate_id OFFSET 0) s",
    )
    .bind(&tenants)
    .bind(&types)
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(tenant_id, aggregate_type, aggregate_id, last_sequence, irregular)| {
                (
                    StreamKey {
                        tenant_id,
                        aggregate_type,
                        aggregate_id,
                    },
                    Stream {
                        last_sequence,
                        irregular,
                    },
                )
            },
        )
        .collect())
}

/// Where the events to apply sit in the batch (duplicates left out), and each advanced stream's
/// new last (sequence, position).
type Plan = (Vec<usize>, HashMap<StreamKey, (i64, i64)>);

/// Plans a batch; `None` when some event is not its stream's next one, or its stream is irregular.
fn plan(events: &[&DecodedEvent], streams: HashMap<StreamKey, Stream>) -> Option<Plan> {
    if streams.values().any(|stream| stream.irregular) {
        return None;
    }
    let mut known: HashMap<StreamKey, i64> = streams
        .into_iter()
        .map(|(key, stream)| (key, stream.last_sequence))
        .collect();
    let mut applicable = Vec::with_capacity(events.len());
    let mut last = HashMap::new();
    for (position, event) in events.iter().enumerate() {
        let record = &event.record;
        let key = StreamKey::of(record);
        let sequence = known.get(&key).copied().unwrap_or(0);
        if record.sequence <= sequence {
            continue;
        }
        if record.sequence != sequence + 1 {
            return None;
        }
        known.insert(key.clone(), record.sequence);
        last.insert(key, (record.sequence, record.position));
        applicable.push(position);
    }
    Some((applicable, last))
}

/// Moves every advanced stream to its new last event, with one statement.
async fn save_streams(
    conn: &mut PgConnection,
    last: &HashMap<StreamKey, (i64, i64)>,
) -> Result<(), ProjectionError> {
    if last.is_empty() {
        return Ok(());
    }
    let (tenants, types, ids) = columns(last.keys());
    let (sequences, positions): (Vec<i64>, Vec<i64>) = last.values().copied().unzip();
    sqlx::query(
        "INSERT INTO stream_state AS s (tenant_id, aggregate_type, aggregate_id, last_sequence, last_position)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[])
         ON CONFLICT (tenant_id, aggregate_type, aggregate_id)
         DO UPDATE SET last_sequence = EXCLUDED.last_sequence, last_position = EXCLUDED.last_position,
             updated_at = now()",
    )
    .bind(&tenants)
    .bind(&types)
    .bind(&ids)
    .bind(&sequences)
    .bind(&positions)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn columns<'a>(
    keys: impl Iterator<Item = &'a StreamKey>,
) -> (Vec<&'a str>, Vec<&'a str>, Vec<&'a str>) {
    let mut columns = (Vec::new(), Vec::new(), Vec::new());
    for key in keys {
        columns.0.push(key.tenant_id.as_str());
        columns.1.push(key.aggregate_type.as_str());
        columns.2.push(key.aggregate_id.as_str());
    }
    columns
}
