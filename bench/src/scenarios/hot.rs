//! (b) One hot aggregate: customers join one campaign, each request its own customer, from
//! many clients at once. The campaign has 5 % fewer places than requests, so the last ones
//! must be refused as "full": a correct answer, not a failure. Anything else that does not
//! succeed (a concurrency conflict, a 5xx, a timeout) is a failure. Joins pay with the sandbox
//! gateway's `pm_card_ok`, so the process managers also command the hot aggregate (paid
//! participants) while the joins run, as in a real flash sale. Checks the log for overselling and reports the rate per tenth of the accepted joins (flat as the stream grows?).

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, bail};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde::Serialize;
use uuid::Uuid;

use super::{Bench, MemoryMib};
use crate::load::{Outcome, Stop, closed_loop, transport};
use crate::stats::{Percentiles, rate};

/// How many equal parts of the accepted joins the rate is reported for.
const WINDOWS: usize = 10;
/// The issue's figure: the rate of the first this many joins.
const FIRST: usize = 10_000;

/// The results of (b).
#[derive(Debug, Clone, Serialize)]
pub struct Hot {
    pub requests: u64,
    pub clients: usize,
    /// Places of the campaign (requests − 5 %).
    pub capacity: u64,
    pub accepted: u64,
    /// Refused because the campaign was full (expected: requests − capacity).
    pub refused_full: u64,
    pub failed: u64,
    pub failures: BTreeMap<String, u64>,
    /// Accepted joins per second, until the last accepted one.
    pub joins_per_s: f64,
    /// Events appended per second (all streams) while the joins ran: the joins and what the
    /// process managers commanded meanwhile for them (stock reservation, payment, paid
    /// participant), several events per join.
    pub events_per_s: f64,
    /// Rate of the first 10,000 accepted joins (or all when fewer).
    pub first_joins_per_s: f64,
    /// Rate of each tenth of the accepted joins, in order: flat if the stream's growth costs nothing.
    pub window_joins_per_s: Vec<f64>,
    /// Last tenth's rate / first tenth's.
    pub flatness: Option<f64>,
    pub latency: Percentiles,
    /// `campaign.joined` events of the campaign's stream in the store.
    pub joined_events: u64,
    /// The most places ever occupied, replaying the stream: joins minus drops and leaves
    /// (the process managers drop a participant whose payment fails, which frees a place).
    pub peak_occupied: u64,
    /// Participants in the campaign read model, when projections run.
    pub read_model_participants: Option<u64>,
    /// More places occupied at some point than the campaign has.
    pub oversold: bool,
    /// The engine's memory after the run (f).
    pub memory_after: MemoryMib,
}

/// Runs (b).
pub async fn run(bench: &Bench) -> anyhow::Result<Hot> {
    let requests = u64::try_from(bench.plan.hot_requests)?;
    let capacity = requests - requests / 20;
    let campaign = create_campaign(bench, capacity).await?;
    let client = bench.client.clone();
    let url: Arc<str> = bench
        .engine
        .url(&format!("/campaigns/{campaign}/join"))
        .into();
    let tokens: Vec<String> = (0..requests)
        .map(|n| {
            bench
                .engine
                .token(&format!("hot-{n}"), "customer")
                .map(|token| format!("Bearer {token}"))
        })
        .collect::<anyhow::Result<_>>()?;
    let tokens = Arc::new(tokens);
    let position_before = log_head(bench).await?;
    let run = closed_loop(bench.plan.hot_clients, Stop::Count(requests), move |n| {
        let auth = usize::try_from(n)
            .ok()
            .and_then(|n| tokens.get(n))
            .cloned()
            .unwrap_or_default();
        let request = client
            .post(&*url)
            .header(AUTHORIZATION, auth)
            .header(CONTENT_TYPE, "application/json")
            .body(r#"{"payment_method":"pm_card_ok"}"#);
        async move {
            match request.send().await {
                Ok(response) => join_outcome(response).await,
                Err(error) => transport(&error),
            }
        }
    })
    .await;
    let appended = appended_after(bench, position_before).await?;
    let accepted_at = &run.completions_us;
    let elapsed_to = |index: usize| std::time::Duration::from_micros(accepted_at[index]);
    let accepted = accepted_at.len();
    let first = accepted.min(FIRST);
    let windows = window_rates(accepted_at, WINDOWS);
    let (joined_events, peak_occupied) = stored_joins(bench, campaign).await?;
    let read_model_participants = participants(bench, campaign).await?;
    let oversold = peak_occupied > capacity
        || read_model_participants.is_some_and(|participants| participants > capacity);
    let hot = Hot {
        requests,
        clients: bench.plan.hot_clients,
        capacity,
        accepted: run.ok,
        refused_full: run.refused,
        failed: run.failed,
        failures: run.failures,
        joins_per_s: if accepted == 0 {
            0.0
        } else {
            rate(run.ok, elapsed_to(accepted - 1))
        },
        events_per_s: rate(appended, run.elapsed),
        first_joins_per_s: if first == 0 {
            0.0
        } else {
            rate(u64::try_from(first)?, elapsed_to(first - 1))
        },
        flatness: match (windows.first(), windows.last()) {
            (Some(&first), Some(&last)) if first > 0.0 => Some(last / first),
            _ => None,
        },
        window_joins_per_s: windows,
        latency: Percentiles::of_micros(&run.latencies_us),
        joined_events,
        peak_occupied,
        read_model_participants,
        oversold,
        memory_after: bench.memory_mib(),
    };
    eprintln!(
        "(b) {} joins on one campaign: {} accepted, {} full, {} failed, {:.0} joins/s, {:.0} events/s appended",
        hot.requests, hot.accepted, hot.refused_full, hot.failed, hot.joins_per_s, hot.events_per_s
    );
    Ok(hot)
}

/// The newest global log position (0 for an empty log).
async fn log_head(bench: &Bench) -> anyhow::Result<i64> {
    let head: Option<i64> = sqlx::query_scalar("SELECT max(position) FROM events")
        .fetch_one(&bench.pool)
        .await
        .context("the log's head")?;
    Ok(head.unwrap_or(0))
}

/// Events stored after `position` (counted: a rolled-back append leaves a hole in positions).
async fn appended_after(bench: &Bench, position: i64) -> anyhow::Result<u64> {
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE position > $1")
        .bind(position)
        .fetch_one(&bench.pool)
        .await
        .context("events appended during (b)")?;
    Ok(u64::try_from(count).unwrap_or(0))
}

/// 200 succeeds; 409 "the campaign is full" is a correct refusal; anything else fails.
async fn join_outcome(response: reqwest::Response) -> Outcome {
    let status = response.status();
    if status.is_success() {
        return Outcome::Ok(None);
    }
    let body = response.text().await.unwrap_or_default();
    if status == reqwest::StatusCode::CONFLICT && body.contains("full") {
        Outcome::Refused
    } else if status == reqwest::StatusCode::CONFLICT {
        Outcome::Failed("HTTP 409 (not full: a conflict)".to_owned())
    } else {
        Outcome::Failed(format!("HTTP {}", status.as_u16()))
    }
}

/// Rates of `parts` equal parts of ascending completion times (µs since the start).
fn window_rates(completions_us: &[u64], parts: usize) -> Vec<f64> {
    let size = completions_us.len() / parts;
    if size == 0 {
        return Vec::new();
    }
    (0..parts)
        .map(|part| {
            let start = if part == 0 {
                0
            } else {
                completions_us[part * size - 1]
            };
            let end = completions_us[(part + 1) * size - 1];
            let span = std::time::Duration::from_micros(end.saturating_sub(start));
            rate(size as u64, span)
        })
        .collect()
}

/// A product, its stock and an active campaign with `capacity` places; returns its id.
async fn create_campaign(bench: &Bench, capacity: u64) -> anyhow::Result<Uuid> {
    let sku = format!("HOT-{}", &Uuid::new_v4().simple().to_string()[..12]);
    let price = |minor: u32| serde_json::json!({"amount_minor": minor, "currency": "EUR"});
    let product = bench
        .client
        .post(bench.engine.url("/products"))
        .header(AUTHORIZATION, &bench.operator)
        .json(&serde_json::json!({"sku": sku, "name": "Hot item", "price": price(1999)}))
        .send()
        .await?;
    if !product.status().is_success() {
        bail!("POST /products answered {}", product.status());
    }
    bench.set_stock(&sku, capacity).await?;
    let now = chrono::Utc::now();
    let response = bench
        .client
        .post(bench.engine.url("/campaigns"))
        .header(AUTHORIZATION, &bench.operator)
        .json(&serde_json::json!({
            "sku": sku,
            "min_participants": 2,
            "max_participants": capacity,
            "group_price": price(999),
            "original_price": price(1999),
            "start_time": now - chrono::Duration::minutes(1),
            "end_time": now + chrono::Duration::days(1),
        }))
        .send()
        .await?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.context("POST /campaigns body")?;
    if !status.is_success() {
        bail!("POST /campaigns answered {status}: {body}");
    }
    body["id"]
        .as_str()
        .and_then(|id| Uuid::parse_str(id).ok())
        .context("POST /campaigns returned no id")
}

/// The campaign's stored `campaign.joined` events, and the most places occupied at once.
async fn stored_joins(bench: &Bench, campaign: Uuid) -> anyhow::Result<(u64, u64)> {
    let (joined, peak): (i64, Option<i64>) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE event_type = 'campaign.joined'), max(occupied)::bigint \
         FROM (SELECT event_type, sum(CASE event_type \
                   WHEN 'campaign.joined' THEN 1 \
                   WHEN 'campaign.participant_dropped' THEN -1 \
                   WHEN 'campaign.participant_left' THEN -1 ELSE 0 END) \
                 OVER (ORDER BY sequence) AS occupied \
               FROM events WHERE aggregate_id LIKE $1) AS stream",
    )
    .bind(format!("%{campaign}"))
    .fetch_one(&bench.pool)
    .await?;
    Ok((u64::try_from(joined)?, u64::try_from(peak.unwrap_or(0))?))
}

/// The read model's participant count, once it caught up (None without projections).
async fn participants(bench: &Bench, campaign: Uuid) -> anyhow::Result<Option<u64>> {
    if !bench.projects() {
        return Ok(None);
    }
    bench.settle().await?;
    let response = bench
        .client
        .get(bench.engine.url(&format!("/campaigns/{campaign}")))
        .header(AUTHORIZATION, &bench.operator)
        .send()
        .await?;
    if !response.status().is_success() {
        return Ok(None);
    }
    let body: serde_json::Value = response.json().await?;
    Ok(body["participants"].as_u64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_evenly_spaced_completions_then_every_window_has_the_same_rate() {
        let completions: Vec<u64> = (1..=100).map(|n| n * 1_000).collect();
        let rates = window_rates(&completions, 10);
        assert_eq!(rates.len(), 10);
        assert!(
            rates.iter().all(|&r| (r - 1000.0).abs() < 1e-6),
            "{rates:?}"
        );
    }

    #[test]
    fn given_a_slowing_run_then_the_last_window_is_slower() {
        let completions: Vec<u64> = (1..=100_u64).map(|n| n * n * 10).collect();
        let rates = window_rates(&completions, 10);
        assert!(rates[9] < rates[0]);
        assert!(window_rates(&completions[..5], 10).is_empty());
    }
}
