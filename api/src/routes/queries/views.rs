//! The wire shapes of the query endpoints, documented for OpenAPI.
//!
//! They mirror `commerce_projections::queries`' views field for field (that crate does not
//! depend on utoipa); the `From` conversions are the only place the two meet.

use chrono::{DateTime, Utc};
use commerce_projections::queries::{
    CampaignView, InventoryView, LocationLevel, OrderLineView, OrderView, PaymentView, ProductView,
    ShipmentView,
};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::routes::dto::MoneyDto;

/// A catalog product.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProductDto {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub description: Option<String>,
    pub price: MoneyDto,
    pub discontinued: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<ProductView> for ProductDto {
    fn from(view: ProductView) -> Self {
        Self {
            id: view.id,
            sku: view.sku,
            name: view.name,
            description: view.description,
            price: MoneyDto::from(&view.price),
            discontinued: view.discontinued,
            created_at: view.created_at,
            updated_at: view.updated_at,
        }
    }
}

/// The stock of a SKU at one location.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LocationLevelDto {
    pub location: String,
    pub on_hand: i64,
    pub reserved: i64,
    /// `on_hand - reserved`.
    pub available: i64,
}

/// The stock of a SKU: totals over its locations, and each location.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InventoryDto {
    pub sku: String,
    pub on_hand: i64,
    pub reserved: i64,
    pub available: i64,
    pub locations: Vec<LocationLevelDto>,
}

impl From<LocationLevel> for LocationLevelDto {
    fn from(level: LocationLevel) -> Self {
        Self {
            location: level.location,
            on_hand: level.on_hand,
            reserved: level.reserved,
            available: level.available,
        }
    }
}

impl From<InventoryView> for InventoryDto {
    fn from(view: InventoryView) -> Self {
        Self {
            sku: view.sku,
            on_hand: view.on_hand,
            reserved: view.reserved,
            available: view.available,
            locations: view.locations.into_iter().map(Into::into).collect(),
        }
    }
}

/// One line of an order, with its fulfilment counters.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderLineDto {
    pub line_no: i64,
    pub sku: String,
    pub product_id: Option<Uuid>,
    pub quantity: i64,
    pub unit_price: MoneyDto,
    pub fulfilled: i64,
    pub shipped: i64,
    pub delivered: i64,
    pub returned: i64,
}

impl From<OrderLineView> for OrderLineDto {
    fn from(line: OrderLineView) -> Self {
        Self {
            line_no: line.line_no,
            sku: line.sku,
            product_id: line.product_id,
            quantity: line.quantity,
            unit_price: MoneyDto::from(&line.unit_price),
            fulfilled: line.fulfilled,
            shipped: line.shipped,
            delivered: line.delivered,
            returned: line.returned,
        }
    }
}

/// An order as the read model knows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderDto {
    pub id: Uuid,
    /// `placed`, `awaiting_payment`, `confirmed`, `shipped`, `delivered`, `completed` or `canceled`.
    pub status: String,
    /// Why a canceled order was canceled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<String>,
    pub lines: Vec<OrderLineDto>,
    pub total: MoneyDto,
    pub payment_status: String,
    pub fulfillment_status: String,
    pub customer_id: String,
    pub campaign_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<OrderView> for OrderDto {
    fn from(view: OrderView) -> Self {
        Self {
            id: view.id,
            status: view.status,
            cancel_reason: view.cancel_reason,
            lines: view.lines.into_iter().map(Into::into).collect(),
            total: MoneyDto::from(&view.total),
            payment_status: view.payment_status,
            fulfillment_status: view.fulfillment_status,
            customer_id: view.customer_id,
            campaign_id: view.campaign_id,
            created_at: view.created_at,
            updated_at: view.updated_at,
        }
    }
}

/// A page of orders, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderPage {
    pub items: Vec<OrderDto>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// A group-buying campaign.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CampaignDto {
    pub id: Uuid,
    /// `scheduled`, `active`, `successful`, `closed`, `failed` or `cancelled`.
    pub status: String,
    pub sku: String,
    pub participants: i64,
    pub paid_participants: i64,
    pub min_participants: i32,
    pub max_participants: i32,
    pub per_customer_limit: i32,
    pub group_price: MoneyDto,
    pub original_price: MoneyDto,
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
}

impl From<CampaignView> for CampaignDto {
    fn from(view: CampaignView) -> Self {
        Self {
            id: view.id,
            status: view.status,
            sku: view.sku,
            participants: view.participants,
            paid_participants: view.paid_participants,
            min_participants: view.min_participants,
            max_participants: view.max_participants,
            per_customer_limit: view.per_customer_limit,
            group_price: MoneyDto::from(&view.group_price),
            original_price: MoneyDto::from(&view.original_price),
            start_time: view.start_time,
            end_time: view.end_time,
        }
    }
}

/// A payment and its ledger of amounts.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PaymentDto {
    pub id: Uuid,
    pub order_id: Option<Uuid>,
    pub campaign_id: Option<Uuid>,
    pub participant_id: Option<Uuid>,
    pub customer_id: String,
    pub status: String,
    pub method: String,
    pub provider: String,
    pub amount: MoneyDto,
    pub authorized: MoneyDto,
    pub captured: MoneyDto,
    pub refunded: MoneyDto,
    pub failure_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<PaymentView> for PaymentDto {
    fn from(view: PaymentView) -> Self {
        Self {
            id: view.id,
            order_id: view.order_id,
            campaign_id: view.campaign_id,
            participant_id: view.participant_id,
            customer_id: view.customer_id,
            status: view.status,
            method: view.method,
            provider: view.provider,
            amount: MoneyDto::from(&view.amount),
            authorized: MoneyDto::from(&view.authorized),
            captured: MoneyDto::from(&view.captured),
            refunded: MoneyDto::from(&view.refunded),
            failure_reason: view.failure_reason,
            created_at: view.created_at,
            updated_at: view.updated_at,
        }
    }
}

/// The payments of an order, oldest first (never more than one page).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PaymentList {
    pub items: Vec<PaymentDto>,
    /// Always `null`: an order's payments fit in one page.
    pub next_cursor: Option<String>,
}

/// A shipment: carrier label, tracking and status.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ShipmentDto {
    pub id: Uuid,
    pub order_id: Uuid,
    pub fulfillment_id: Option<Uuid>,
    pub carrier: String,
    pub service: String,
    pub tracking_number: String,
    pub label_url: String,
    pub status: String,
    pub cancel_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub shipped_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl From<ShipmentView> for ShipmentDto {
    fn from(view: ShipmentView) -> Self {
        Self {
            id: view.id,
            order_id: view.order_id,
            fulfillment_id: view.fulfillment_id,
            carrier: view.carrier,
            service: view.service,
            tracking_number: view.tracking_number,
            label_url: view.label_url,
            status: view.status,
            cancel_reason: view.cancel_reason,
            created_at: view.created_at,
            shipped_at: view.shipped_at,
            delivered_at: view.delivered_at,
            updated_at: view.updated_at,
        }
    }
}

/// The shipments of an order, oldest first (never more than one page).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ShipmentList {
    pub items: Vec<ShipmentDto>,
    /// Always `null`: an order's shipments fit in one page.
    pub next_cursor: Option<String>,
}
