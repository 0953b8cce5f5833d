//! Durable deadlines (ES-5): one row per (tenant, aggregate, key, kind) in `deadlines`.
//!
//! - Scheduling is an upsert that keeps a row that already fired, so re-processing the event
//!   that scheduled a deadline never re-arms it; a not-yet-fired row takes the newest due time.
//! - The runner claims a due, unfired row with a lease on `retry_at` (`FOR UPDATE SKIP LOCKED`
//!   in the claiming statement, so concurrent runners split the work), issues the deadline's
//!   command with the idempotency key `deadline:{aggregate}:{key}:{kind}` and marks the row
//!   fired; no transaction stays open while the command runs. A crash between the command and
//!   the mark re-fires the same key when the lease ends: the store replays the first outcome,
//!   so the command takes effect exactly once.
//! - A command refused because the aggregate moved on (a paid order, a closed campaign) counts
//!   as fired: a late fire after a terminal state does nothing.
//! - A command that fails (the store unreachable, conflicts beyond the retries) leaves the row
//!   unfired, counts the attempt and sets `retry_at` a growing delay ahead (capped at
//!   [`MAX_RETRY_DELAY`] seconds): the runner goes on with the deadlines due after it instead of trying
//!   the same one again at once, and a deadline is never given up.
//! - Transactions are kept short on purpose: an open transaction holds back the global log's
//!   horizon that every log tailer (relay, process managers) waits for.

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::engine::Cause;
use crate::error::WorkflowError;

/// What a deadline does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeadlineKind {
    /// Expire an unpaid order (`order`, key = order id).
    OrderExpiry,
    /// Expire due reservations on an inventory stream (`inventory`, key = `{sku}:{location}`);
    /// one row per reservation.
    ReservationExpiry(Uuid),
    /// Start a scheduled campaign.
    CampaignStart,
    /// Close, or fail, a campaign at its end time.
    CampaignEnd,
    /// Let an uncaptured authorization lapse (`payment`).
    AuthorizationExpiry,
}

impl DeadlineKind {
    pub fn aggregate_type(self) -> &'static str {
        match self {
            Self::OrderExpiry => "order",
            Self::ReservationExpiry(_) => "inventory",
            Self::CampaignStart | Self::CampaignEnd => "campaign",
            Self::AuthorizationExpiry => "payment",
        }
    }

    pub fn name(self) -> String {
        match self {
            Self::OrderExpiry => "order_expiry".to_owned(),
            Self::ReservationExpiry(id) => format!("reservation_expiry:{id}"),
            Self::CampaignStart => "campaign_start".to_owned(),
            Self::CampaignEnd => "campaign_end".to_owned(),
            Self::AuthorizationExpiry => "authorization_expiry".to_owned(),
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "order_expiry" => Self::OrderExpiry,
            "campaign_start" => Self::CampaignStart,
            "campaign_end" => Self::CampaignEnd,
            "authorization_expiry" => Self::AuthorizationExpiry,
            other => Self::ReservationExpiry(
                other
                    .strip_prefix("reservation_expiry:")
                    .and_then(|id| Uuid::parse_str(id).ok())?,
            ),
        })
    }
}

/// A due deadline, as read by the runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DueDeadline {
    pub kind: DeadlineKind,
    pub aggregate_key: String,
    pub due_at: DateTime<Utc>,
    pub cause: Cause,
}

/// A `deadlines` row: tenant, aggregate type, key, kind, due time, correlation, causation,
/// failed attempts.
type DeadlineRow = (
    String,
    String,
    String,
    String,
    DateTime<Utc>,
    Uuid,
    Uuid,
    i32,
);

/// What became of the deadline [`Deadlines::fire_next`] claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fired {
    /// It fired; the outcome recorded with it.
    Done(String),
    /// Its command failed; it is tried again from `retry_at`.
    Failed {
        error: String,
        attempts: i32,
        retry_at: DateTime<Utc>,
    },
}

/// How long a claimed deadline is kept from other runners while it fires. It is also how long
/// a runner that died while firing holds the deadline back (a campaign's close, an order's
/// expiry), so it is kept short: longer than a firing takes (one command, perhaps a provider
/// call), and a firing that outlasts it may be fired again beside it, which its keyed
/// commands make harmless.
const FIRING_LEASE: TimeDelta = TimeDelta::seconds(30);

/// The longest wait between two attempts of a failing deadline, in seconds.
pub(crate) const MAX_RETRY_DELAY: i64 = 300;

/// The wait after a deadline's `attempts`-th failure: one second, doubling, capped.
fn retry_delay(attempts: i32) -> TimeDelta {
    let doublings = attempts.saturating_sub(1).clamp(0, 16);
    TimeDelta::seconds((1_i64 << doublings).min(MAX_RETRY_DELAY))
}

/// Unfired, due and not waiting for a retry at `$1`.
const DUE: &str = "fired_at IS NULL AND due_at <= $1 AND (retry_at IS NULL OR retry_at <= $1)";

/// The `deadlines` table.
#[derive(Debug, Clone)]
pub(crate) struct Deadlines {
    pool: PgPool,
}

impl Deadlines {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Arms (or re-times, while unfired) the deadline `kind` of `aggregate_key` for `cause`.
    /// A new due time starts any backoff afresh.
    pub async fn schedule(
        &self,
        cause: &Cause,
        kind: DeadlineKind,
        aggregate_key: &str,
        due_at: DateTime<Utc>,
    ) -> Result<(), WorkflowError> {
        sqlx::query(
            "INSERT INTO deadlines \
               (tenant_id, aggregate_type, aggregate_key, kind, due_at, correlation_id, causation_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (tenant_id, aggregate_type, aggregate_key, kind) DO UPDATE \
               SET due_at = EXCLUDED.due_at, \
                   retry_at = CASE WHEN deadlines.due_at = EXCLUDED.due_at \
                                   THEN deadlines.retry_at END, \
                   attempts = CASE WHEN deadlines.due_at = EXCLUDED.due_at \
                                   THEN deadlines.attempts ELSE 0 END \
               WHERE deadlines.fired_at IS NULL",
        )
        .bind(&cause.tenant)
        .bind(kind.aggregate_type())
        .bind(aggregate_key)
        .bind(kind.name())
        .bind(due_at)
        .bind(cause.correlation_id)
        .bind(cause.causation_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Whether any deadline is due at `now`, not fired yet and not waiting for a retry.
    pub async fn any_due(&self, now: DateTime<Utc>) -> Result<bool, WorkflowError> {
        let due = sqlx::query_scalar(&format!(
            "SELECT EXISTS (SELECT 1 FROM deadlines WHERE {DUE})"
        ))
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(due)
    }

    /// Claims the next due deadline, runs `fire` on it and records its outcome, or its
    /// failure and next attempt. `None` when nothing is due.
    ///
    /// The claim is a lease ([`FIRING_LEASE`] on `retry_at`), committed before `fire` runs, not a
    /// row lock held through it: a row lock gives the transaction an id, and while it is open
    /// every reader of the global log (the relay, the projections, these process managers)
    /// stops at the oldest open transaction, so a slow payment provider would hold the whole
    /// pipeline up. A runner that dies while firing leaves the lease to run out; the deadline
    /// is then due again, and its commands are keyed, so firing it twice changes nothing.
    ///
    /// # Errors
    /// The row could not be read or updated. A claimed one is due again when its lease ends.
    pub async fn fire_next<F, Fut>(
        &self,
        clock: impl Fn() -> DateTime<Utc>,
        fire: F,
    ) -> Result<Option<Fired>, WorkflowError>
    where
        F: FnOnce(DueDeadline) -> Fut,
        Fut: Future<Output = Result<String, WorkflowError>>,
    {
        let now = clock();
        let row: Option<DeadlineRow> = sqlx::query_as(&format!(
            "UPDATE deadlines d SET retry_at = $2 \
             FROM (SELECT tenant_id, aggregate_type, aggregate_key, kind FROM deadlines \
                   WHERE {DUE} ORDER BY due_at LIMIT 1 FOR UPDATE SKIP LOCKED) due \
             WHERE (d.tenant_id, d.aggregate_type, d.aggregate_key, d.kind) \
                 = (due.tenant_id, due.aggregate_type, due.aggregate_key, due.kind) \
             RETURNING d.tenant_id, d.aggregate_type, d.aggregate_key, d.kind, d.due_at, \
                       d.correlation_id, d.causation_id, d.attempts"
        ))
        .bind(now)
        .bind(now + FIRING_LEASE)
        .fetch_optional(&self.pool)
        .await?;
        let Some((
            tenant,
            aggregate_type,
            aggregate_key,
            kind_name,
            due_at,
            correlation,
            causation,
            attempts,
        )) = row
        else {
            return Ok(None);
        };
        let outcome = match DeadlineKind::parse(&kind_name) {
            Some(kind) => {
                let cause = Cause {
                    key_prefix: format!("deadline:{aggregate_type}:{aggregate_key}:{kind_name}"),
                    tenant: tenant.clone(),
                    causation_id: causation,
                    correlation_id: correlation,
                };
                fire(DueDeadline {
                    kind,
                    aggregate_key: aggregate_key.clone(),
                    due_at,
                    cause,
                })
                .await
            }
            None => Ok(format!("unknown deadline kind {kind_name:?}")),
        };
        let fired = match outcome {
            Ok(outcome) => Fired::Done(outcome),
            Err(error) => {
                let attempts = attempts.saturating_add(1);
                Fired::Failed {
                    error: error.to_string(),
                    attempts,
                    // From when it failed: a command that took longer than the wait to fail
                    // would otherwise be due again at once.
                    retry_at: clock() + retry_delay(attempts),
                }
            }
        };
        // Only the claim it fired: a reschedule while it fired (a new `due_at`) stays due.
        let update = match &fired {
            Fired::Done(outcome) => sqlx::query(
                "UPDATE deadlines SET fired_at = $6, outcome = $7, retry_at = NULL \
                 WHERE tenant_id = $1 AND aggregate_type = $2 AND aggregate_key = $3 AND kind = $4 \
                   AND due_at = $5 AND fired_at IS NULL",
            )
            .bind(&tenant)
            .bind(&aggregate_type)
            .bind(&aggregate_key)
            .bind(&kind_name)
            .bind(due_at)
            .bind(now)
            .bind(outcome),
            Fired::Failed {
                error,
                attempts,
                retry_at,
            } => sqlx::query(
                "UPDATE deadlines SET attempts = $6, retry_at = $7, last_error = $8 \
                 WHERE tenant_id = $1 AND aggregate_type = $2 AND aggregate_key = $3 AND kind = $4 \
                   AND due_at = $5 AND fired_at IS NULL",
            )
            .bind(&tenant)
            .bind(&aggregate_type)
            .bind(&aggregate_key)
            .bind(&kind_name)
            .bind(due_at)
            .bind(attempts)
            .bind(retry_at)
            .bind(error),
        };
        update.execute(&self.pool).await?;
        Ok(Some(fired))
    }
}

#[cfg(test)]
mod tests {
    use commerce_devstack::testkit::TestDatabase;

    use super::*;

    fn cause() -> Cause {
        Cause {
            tenant: "t1".to_owned(),
            causation_id: Uuid::from_u128(1),
            correlation_id: Uuid::from_u128(2),
            key_prefix: String::new(),
        }
    }

    /// The `deadlines` table of a fresh, migrated database (kept alive by the returned handle).
    async fn migrated_deadlines() -> (TestDatabase, Deadlines) {
        let db = TestDatabase::create().await.expect("test database");
        crate::migrate(db.pool()).await.expect("migrated");
        let deadlines = Deadlines::new(db.pool().clone());
        (db, deadlines)
    }

    /// Fires the next due deadline at `now`, whose command fails for the order `failing`.
    async fn fire_next(
        deadlines: &Deadlines,
        now: DateTime<Utc>,
        failing: &str,
    ) -> Option<(String, Fired)> {
        let mut fired_key = None;
        let fired = deadlines
            .fire_next(
                || now,
                |due| {
                    fired_key = Some(due.aggregate_key.clone());
                    async move {
                        if due.aggregate_key == failing {
                            Err(WorkflowError::decode("the store", "unreachable"))
                        } else {
                            Ok("appended".to_owned())
                        }
                    }
                },
            )
            .await
            .expect("deadline row read and written")?;
        Some((fired_key.expect("the deadline's command ran"), fired))
    }

    #[tokio::test]
    async fn given_a_deadline_whose_command_fails_when_fired_then_it_backs_off_and_those_due_after_it_fire()
     {
        let (db, deadlines) = migrated_deadlines().await;
        let due = DateTime::from_timestamp(1_800_000_000, 0).expect("a time");
        // given: two due order expiries, the first one's command failing
        for (key, at) in [("failing", due), ("later", due + TimeDelta::seconds(1))] {
            deadlines
                .schedule(&cause(), DeadlineKind::OrderExpiry, key, at)
                .await
                .expect("scheduled");
        }
        let now = due + TimeDelta::seconds(2);

        // when: the runner fires what is due
        let first = fire_next(&deadlines, now, "failing").await;
        let second = fire_next(&deadlines, now, "failing").await;

        // then: the failing one waits a second, the later one fires, and nothing else is due
        let retry_at = now + TimeDelta::seconds(1);
        assert_eq!(
            first,
            Some((
                "failing".to_owned(),
                Fired::Failed {
                    error: "cannot decode the store: unreachable".to_owned(),
                    attempts: 1,
                    retry_at,
                }
            ))
        );
        assert_eq!(
            second,
            Some(("later".to_owned(), Fired::Done("appended".to_owned())))
        );
        assert_eq!(fire_next(&deadlines, now, "failing").await, None);
        assert!(!deadlines.any_due(now).await.expect("checked"));

        // when: its retry time comes and it fails again, then comes again and it succeeds
        assert!(deadlines.any_due(retry_at).await.expect("checked"));
        let again = fire_next(&deadlines, retry_at, "failing").await;
        let retried_at = retry_at + TimeDelta::seconds(2);
        let last = fire_next(&deadlines, retried_at, "none").await;

        // then: the wait doubled, and the deadline fired in the end with its history kept
        assert_eq!(
            again.map(|(_, fired)| fired),
            Some(Fired::Failed {
                error: "cannot decode the store: unreachable".to_owned(),
                attempts: 2,
                retry_at: retried_at,
            })
        );
        assert_eq!(
            last,
            Some(("failing".to_owned(), Fired::Done("appended".to_owned())))
        );
        let row: (Option<String>, i32, Option<DateTime<Utc>>, Option<String>) = sqlx::query_as(
            "SELECT outcome, attempts, retry_at, last_error FROM deadlines \
             WHERE aggregate_key = 'failing'",
        )
        .fetch_one(db.pool())
        .await
        .expect("row");
        assert_eq!(
            row,
            (
                Some("appended".to_owned()),
                2,
                None,
                Some("cannot decode the store: unreachable".to_owned())
            )
        );
    }

    #[tokio::test]
    async fn given_a_command_slower_to_fail_than_its_wait_then_the_wait_counts_from_the_failure() {
        let (_db, deadlines) = migrated_deadlines().await;
        let due = DateTime::from_timestamp(1_800_000_000, 0).expect("a time");
        deadlines
            .schedule(&cause(), DeadlineKind::OrderExpiry, "slow", due)
            .await
            .expect("scheduled");
        // given: a clock that has moved on 30 s by the time the command fails
        let readings = std::sync::atomic::AtomicI64::new(0);
        let clock = || {
            due + TimeDelta::seconds(
                30 * readings.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            )
        };

        // when: it fails
        let fired = deadlines
            .fire_next(clock, |_| async {
                Err(WorkflowError::decode("the store", "timed out"))
            })
            .await
            .expect("row written");

        // then: its first wait (1 s) starts at the failure, not at the claim
        assert!(
            matches!(fired, Some(Fired::Failed { attempts: 1, retry_at, .. })
                if retry_at == due + TimeDelta::seconds(31)),
            "{fired:?}"
        );
    }

    #[tokio::test]
    async fn given_a_backing_off_deadline_when_re_timed_then_its_backoff_starts_afresh() {
        let (db, deadlines) = migrated_deadlines().await;
        let due = DateTime::from_timestamp(1_800_000_000, 0).expect("a time");
        let backoff = || async {
            sqlx::query_as::<_, (i32, Option<DateTime<Utc>>)>(
                "SELECT attempts, retry_at FROM deadlines WHERE aggregate_key = 'order'",
            )
            .fetch_one(db.pool())
            .await
            .expect("row")
        };
        // given: a deadline that failed twice
        deadlines
            .schedule(&cause(), DeadlineKind::OrderExpiry, "order", due)
            .await
            .expect("scheduled");
        for at in [due, due + TimeDelta::seconds(1)] {
            fire_next(&deadlines, at, "order").await;
        }
        let failing = backoff().await;
        assert_eq!(failing, (2, Some(due + TimeDelta::seconds(3))));

        // when: it is scheduled again at the same time, then at a new one
        deadlines
            .schedule(&cause(), DeadlineKind::OrderExpiry, "order", due)
            .await
            .expect("same time");
        let same = backoff().await;
        deadlines
            .schedule(
                &cause(),
                DeadlineKind::OrderExpiry,
                "order",
                due - TimeDelta::hours(1),
            )
            .await
            .expect("new time");

        // then: the same time keeps the backoff, a new one clears it
        assert_eq!(same, failing);
        assert_eq!(backoff().await, (0, None));
    }

    #[test]
    fn given_repeated_failures_when_backing_off_then_the_wait_doubles_up_to_its_cap() {
        let waits: Vec<i64> = (1..=11)
            .map(|attempts| retry_delay(attempts).num_seconds())
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(retry_delay(i32::MAX).num_seconds(), MAX_RETRY_DELAY);
    }

    #[test]
    fn given_every_kind_when_named_and_parsed_then_it_round_trips() {
        for kind in [
            DeadlineKind::OrderExpiry,
            DeadlineKind::ReservationExpiry(Uuid::from_u128(7)),
            DeadlineKind::CampaignStart,
            DeadlineKind::CampaignEnd,
            DeadlineKind::AuthorizationExpiry,
        ] {
            assert_eq!(DeadlineKind::parse(&kind.name()), Some(kind));
        }
        assert_eq!(DeadlineKind::parse("reservation_expiry:nope"), None);
    }

    #[tokio::test]
    async fn a_deadline_being_fired_holds_no_transaction_open_and_is_not_due_to_others() {
        let (db, deadlines) = migrated_deadlines().await;
        let due = DateTime::from_timestamp(1_800_000_000, 0).expect("a time");
        deadlines
            .schedule(&cause(), DeadlineKind::OrderExpiry, "o-1", due)
            .await
            .expect("scheduled");
        let (pool, others) = (db.pool().clone(), deadlines.clone());

        // when: it fires, and looks around while it does
        let fired = deadlines
            .fire_next(
                || due,
                |_| async move {
                    let open: i64 = sqlx::query_scalar(
                        "SELECT count(*) FROM pg_stat_activity \
                         WHERE datname = current_database() AND backend_xid IS NOT NULL",
                    )
                    .fetch_one(&pool)
                    .await
                    .expect("activity");
                    let due_to_others = others.any_due(due).await.expect("checked");
                    Ok(format!("{open} open, due to others: {due_to_others}"))
                },
            )
            .await
            .expect("fired");

        // then: no transaction of the database held the log readers back, and no other
        // runner could take it
        assert_eq!(
            fired,
            Some(Fired::Done("0 open, due to others: false".to_owned()))
        );
    }

    #[tokio::test]
    async fn a_deadline_whose_runner_died_while_firing_is_due_again_when_its_lease_ends() {
        let (_db, deadlines) = migrated_deadlines().await;
        let due = DateTime::from_timestamp(1_800_000_000, 0).expect("a time");
        deadlines
            .schedule(&cause(), DeadlineKind::OrderExpiry, "o-1", due)
            .await
            .expect("scheduled");

        // given: a runner claimed it and died before its command answered
        let dying = deadlines.fire_next(|| due, |_| std::future::pending());
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(200), dying)
                .await
                .is_err()
        );

        // then: it waits out the lease, and then fires
        assert!(!deadlines.any_due(due).await.expect("checked"));
        let after_lease = due + FIRING_LEASE;
        assert!(deadlines.any_due(after_lease).await.expect("checked"));
        assert_eq!(
            fire_next(&deadlines, after_lease, "none").await,
            Some(("o-1".to_owned(), Fired::Done("appended".to_owned())))
        );
        assert!(!deadlines.any_due(after_lease).await.expect("checked"));
    }
}
