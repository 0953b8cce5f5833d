//! The client side of a fault run: a mixed stream of commands (orders, cancellations, campaign
//! joins, stock changes) over HTTP, recording every acknowledged response.
//!
//! "Acknowledged" means a 2xx answer: from then on the engine owes the client those events.
//! A command whose answer never came (connection refused or reset while a process was down) or
//! was a 5xx is retried with the same `Idempotency-Key`, as a careful client would; if it is
//! still unanswered, its outcome is unknown and the suite only counts it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::FaultError;
use crate::rng::Rng;

/// The one tenant of a fault run.
pub const TENANT: &str = "faults";
const CURRENCY: &str = "EUR";
const RETRIES: u32 = 4;

/// An acknowledged command and what the engine owes for it.
#[derive(Debug, Clone)]
pub struct Ack {
    pub kind: &'static str,
    /// The log position of the command's last event (`Consistency-Token`), when it appended.
    pub position: Option<i64>,
    /// The stream the command created or changed (`aggregate_type`, key without tenant).
    pub stream: Option<(&'static str, String)>,
}

/// What the workload did.
#[derive(Debug, Default, Clone)]
pub struct WorkloadStats {
    pub attempted: u64,
    pub acknowledged: u64,
    /// Refusals (4xx) by status: expected ones, e.g. 409 for a cancel of a confirmed order.
    pub refused: BTreeMap<u16, u64>,
    /// Answers of 5xx by status, retried ones included.
    pub server_errors: BTreeMap<u16, u64>,
    /// Requests that got no answer at all (a process was down), retried ones included.
    pub transport_errors: u64,
    /// Commands still unanswered after every retry: outcome unknown.
    pub unknown_outcome: u64,
    pub retries: u64,
}

/// The workload's fixed cast: an operator, some customers, the SKUs and one campaign.
#[derive(Debug)]
pub struct Workload {
    client: Client,
    base: String,
    operator: String,
    customers: Vec<String>,
    skus: Vec<String>,
    campaign: Option<Uuid>,
    orders: Vec<(usize, Uuid)>,
    pub acks: Vec<Ack>,
    pub stats: WorkloadStats,
}

impl Workload {
    /// `operator` and `customers` are bearer tokens of [`TENANT`].
    pub fn new(base: String, operator: String, customers: Vec<String>) -> Result<Self, FaultError> {
        let client = Client::builder().timeout(Duration::from_secs(10)).build()?;
        Ok(Self {
            client,
            base,
            operator,
            customers,
            skus: Vec::new(),
            campaign: None,
            orders: Vec::new(),
            acks: Vec::new(),
            stats: WorkloadStats::default(),
        })
    }

    /// Creates `skus` products with scarce stock and one running group-buying campaign.
    pub async fn setup(&mut self, skus: usize, rng: &mut Rng) -> Result<(), FaultError> {
        for index in 0..skus {
            let sku = format!("SKU-{index}");
            let price = 500 + i64::try_from(rng.below(5000)).unwrap_or(0);
            let body = json!({"sku": sku, "name": format!("Product {index}"),
                              "price": {"amount_minor": price, "currency": CURRENCY}});
            self.must(Method::POST, "/products", None, body, "product")
                .await?;
            let stock = json!({"sku": sku, "quantity": rng.between(10, 40)});
            self.must(Method::PUT, "/inventory", None, stock, "stock")
                .await?;
            self.skus.push(sku);
        }
        let now = Utc::now();
        let campaign = json!({
            "sku": self.skus.first().cloned().unwrap_or_default(),
            "min_participants": 2, "max_participants": 1000,
            "group_price": {"amount_minor": 300, "currency": CURRENCY},
            "original_price": {"amount_minor": 500, "currency": CURRENCY},
            "start_time": (now - chrono::Duration::minutes(1)).to_rfc3339(),
            "end_time": (now + chrono::Duration::hours(2)).to_rfc3339(),
            "per_customer_limit": 1000,
        });
        let created = self
            .must(Method::POST, "/campaigns", None, campaign, "campaign")
            .await?;
        self.campaign = created
            .get("id")
            .and_then(Value::as_str)
            .and_then(|id| Uuid::parse_str(id).ok());
        Ok(())
    }

    /// Shares the SKUs and campaign another workload created in [`Workload::setup`].
    pub fn adopt(&mut self, setup: &Self) {
        self.skus.clone_from(&setup.skus);
        self.campaign = setup.campaign;
    }

    /// One random command of the mix.
    pub async fn step(&mut self, rng: &mut Rng) {
        let roll = rng.below(100);
        let customer = usize::try_from(rng.below(self.customers.len() as u64)).unwrap_or(0);
        if roll < 55 || self.orders.is_empty() {
            self.place_order(rng, customer).await;
        } else if roll < 65 {
            self.cancel_order(rng).await;
        } else if roll < 80 {
            self.join_campaign(customer).await;
        } else {
            self.set_stock(rng).await;
        }
    }

    async fn place_order(&mut self, rng: &mut Rng, customer: usize) {
        let mut lines = Vec::new();
        for _ in 0..rng.between(1, 2) {
            if let Some(sku) = rng.pick(&self.skus).cloned() {
                lines.push(json!({"sku": sku, "quantity": rng.between(1, 3)}));
            }
        }
        let method = if rng.chance(15) {
            "pm_card_declined"
        } else {
            "pm_card_ok"
        };
        let body = json!({"lines": lines, "currency": CURRENCY, "payment_method": method});
        let token = self.customers.get(customer).cloned();
        if let Some(answer) = self
            .command(Method::POST, "/orders", token, body, "order.place")
            .await
            && let Some(id) = answer.id
        {
            self.orders.push((customer, id));
            self.record(
                answer.position,
                "order.place",
                Some(("order", id.to_string())),
            );
        }
    }

    async fn cancel_order(&mut self, rng: &mut Rng) {
        let Some(&(customer, id)) = rng.pick(&self.orders) else {
            return;
        };
        let token = self.customers.get(customer).cloned();
        let body = json!({"reason": "changed my mind"});
        let path = format!("/orders/{id}/cancel");
        if let Some(answer) = self
            .command(Method::POST, &path, token, body, "order.cancel")
            .await
        {
            self.record(
                answer.position,
                "order.cancel",
                Some(("order", id.to_string())),
            );
        }
    }

    async fn join_campaign(&mut self, customer: usize) {
        let Some(campaign) = self.campaign else {
            return;
        };
        let token = self.customers.get(customer).cloned();
        let body = json!({"quantity": 1, "payment_method": "pm_card_ok"});
        let path = format!("/campaigns/{campaign}/join");
        if let Some(answer) = self
            .command(Method::POST, &path, token, body, "campaign.join")
            .await
        {
            self.record(
                answer.position,
                "campaign.join",
                Some(("campaign", campaign.to_string())),
            );
        }
    }

    async fn set_stock(&mut self, rng: &mut Rng) {
        let Some(sku) = rng.pick(&self.skus).cloned() else {
            return;
        };
        let body = json!({"sku": sku, "quantity": rng.between(0, 40)});
        if let Some(answer) = self
            .command(Method::PUT, "/inventory", None, body, "inventory.set")
            .await
        {
            self.record(
                answer.position,
                "inventory.set",
                Some(("inventory", format!("{sku}:default"))),
            );
        }
    }

    fn record(
        &mut self,
        position: Option<i64>,
        kind: &'static str,
        stream: Option<(&'static str, String)>,
    ) {
        self.acks.push(Ack {
            kind,
            position,
            stream,
        });
    }

    /// A setup command that must succeed (retried through outages).
    async fn must(
        &mut self,
        method: Method,
        path: &str,
        token: Option<String>,
        body: Value,
        kind: &'static str,
    ) -> Result<Value, FaultError> {
        let answer = self
            .command(method, path, token, body, kind)
            .await
            .ok_or_else(|| {
                FaultError::Unexpected(format!("setup command {kind} on {path} was refused"))
            })?;
        self.record(answer.position, kind, None);
        Ok(answer.body)
    }

    /// Sends one command with retries under one idempotency key; `Some` when acknowledged.
    async fn command(
        &mut self,
        method: Method,
        path: &str,
        token: Option<String>,
        body: Value,
        _kind: &'static str,
    ) -> Option<Answer> {
        self.stats.attempted += 1;
        let token = token.unwrap_or_else(|| self.operator.clone());
        let key = Uuid::new_v4().to_string();
        let url = format!("{}{path}", self.base);
        for attempt in 0..=RETRIES {
            if attempt > 0 {
                self.stats.retries += 1;
                tokio::time::sleep(Duration::from_millis(250 * u64::from(attempt))).await;
            }
            let sent = self
                .client
                .request(method.clone(), &url)
                .bearer_auth(&token)
                .header("Idempotency-Key", &key)
                .json(&body)
                .send()
                .await;
            let response = match sent {
                Ok(response) => response,
                Err(_) => {
                    self.stats.transport_errors += 1;
                    continue;
                }
            };
            let status = response.status();
            if status.is_server_error() {
                *self.stats.server_errors.entry(status.as_u16()).or_default() += 1;
                continue;
            }
            if !status.is_success() {
                *self.stats.refused.entry(status.as_u16()).or_default() += 1;
                return None;
            }
            let position = response
                .headers()
                .get("consistency-token")
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse().ok());
            let body = if status == StatusCode::NO_CONTENT {
                Value::Null
            } else {
                response.json().await.unwrap_or(Value::Null)
            };
            self.stats.acknowledged += 1;
            let id = body
                .get("id")
                .and_then(Value::as_str)
                .and_then(|id| Uuid::parse_str(id).ok());
            return Some(Answer { position, body, id });
        }
        self.stats.unknown_outcome += 1;
        None
    }

    /// Runs the mix for `operations` commands or until `deadline`, whichever comes first.
    pub async fn run(&mut self, rng: &mut Rng, operations: u64, deadline: Instant) {
        for _ in 0..operations {
            if Instant::now() > deadline {
                break;
            }
            self.step(rng).await;
        }
    }
}

#[derive(Debug)]
struct Answer {
    position: Option<i64>,
    body: Value,
    id: Option<Uuid>,
}
