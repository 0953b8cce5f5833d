//! The workers' own record of their group, kept in PostgreSQL beside the broker's, and the way
//! out when the broker's group coordinator is stuck.
//!
//! Every second each worker records the partitions it consumes (`rm_meta.projection_members`).
//! A partition that no worker seen within [`LIVENESS`] consumes, for [`PATIENCE`] on end, is
//! orphaned. A sound coordinator hands every partition out within seconds of a member's death,
//! so an orphan means the coordinator is stuck. Tansu 0.6 gets stuck that way after a member dies
//! without leaving (RELIABILITY.md finding 10): the heartbeat that expires the dead member answers
//! `RebalanceInProgress` but leaves the group formed, with its generation and its assignments
//! unchanged, so the survivors rejoin into their old shares and the dead member's share is never
//! consumed again; and once a member that is gone stays recorded as the leader, the group never
//! forms again. The way out is a fresh Kafka group: a worker bumps the group's epoch
//! (compare-and-set), every worker sees it within a second and subscribes again in
//! `<group>.epoch-<n>`. The stored offsets stay keyed by the group id, so nothing is skipped.

use std::time::{Duration, Instant};

use sqlx::PgPool;
use uuid::Uuid;

use crate::error::ProjectionError;

/// A worker not seen for this long consumes nothing any more (as the broker's session timeout).
pub(super) const LIVENESS: Duration = Duration::from_secs(10);
/// How long partitions may stay orphaned before the group moves to a fresh Kafka group: more than
/// an ordinary rebalance takes on Tansu (a follower pauses 3 s per join).
pub(super) const PATIENCE: Duration = Duration::from_secs(15);

/// One worker's membership of its group.
#[derive(Debug)]
pub(super) struct Membership {
    group: String,
    member: Uuid,
    epoch: i64,
    orphaned_since: Option<Instant>,
}

impl Membership {
    /// Joins `group`'s record as a new member, at the group's current epoch.
    pub(super) async fn join(pool: &PgPool, group: &str) -> Result<Self, ProjectionError> {
        // Rows of workers gone for long (killed, never left) are of no use to anyone.
        sqlx::query(
            "DELETE FROM rm_meta.projection_members
             WHERE group_id = $1 AND seen_at < now() - interval '1 hour'",
        )
        .bind(group)
        .execute(pool)
        .await?;
        sqlx::query(
            "INSERT INTO rm_meta.projection_groups (group_id) VALUES ($1) ON CONFLICT DO NOTHING",
        )
        .bind(group)
        .execute(pool)
        .await?;
        let epoch = current_epoch(pool, group).await?;
        Ok(Self {
            group: group.to_owned(),
            member: Uuid::new_v4(),
            epoch,
            orphaned_since: None,
        })
    }

    /// The Kafka consumer group of the current epoch (epoch 0 is the group id itself).
    pub(super) fn kafka_group(&self) -> String {
        match self.epoch {
            0 => self.group.clone(),
            epoch => format!("{}.epoch-{epoch}", self.group),
        }
    }

    /// Records that this worker consumes `consumed`, and tells whether it must move to the Kafka
    /// group of a new epoch: another worker moved there, or `all` had partitions nobody consumed
    /// for [`PATIENCE`] and this worker moved the group.
    pub(super) async fn check(
        &mut self,
        pool: &PgPool,
        consumed: &[(String, i32)],
        all: &[(String, i32)],
    ) -> Result<bool, ProjectionError> {
        let epoch = current_epoch(pool, &self.group).await?;
        if epoch != self.epoch {
            self.moved_to(epoch);
            return Ok(true);
        }
        let pairs: Vec<(&str, i32)> = consumed.iter().map(|(t, p)| (t.as_str(), *p)).collect();
        sqlx::query(
            "INSERT INTO rm_meta.projection_members (group_id, member_id, epoch, partitions)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (group_id, member_id) DO UPDATE
             SET epoch = EXCLUDED.epoch, partitions = EXCLUDED.partitions, seen_at = now()",
        )
        .bind(&self.group)
        .bind(self.member)
        .bind(self.epoch)
        .bind(sqlx::types::Json(&pairs))
        .execute(pool)
        .await?;
        let orphans = self.orphans(pool, all).await?;
        if orphans.is_empty() {
            self.orphaned_since = None;
            return Ok(false);
        }
        let since = *self.orphaned_since.get_or_insert_with(Instant::now);
        if since.elapsed() < PATIENCE {
            return Ok(false);
        }
        tracing::warn!(
            ?orphans,
            seconds = since.elapsed().as_secs(),
            group = self.kafka_group(),
            "partitions nobody consumes: the broker's consumer group is stuck; moving to a fresh one"
        );
        sqlx::query(
            "UPDATE rm_meta.projection_groups SET epoch = epoch + 1, bumped_at = now()
             WHERE group_id = $1 AND epoch = $2",
        )
        .bind(&self.group)
        .bind(self.epoch)
        .execute(pool)
        .await?;
        // Another worker may have bumped it first: either way, this is the epoch to meet in.
        let epoch = current_epoch(pool, &self.group).await?;
        self.moved_to(epoch);
        Ok(true)
    }

    /// Removes this worker's row: its partitions count as orphaned at once.
    pub(super) async fn leave(&self, pool: &PgPool) -> Result<(), ProjectionError> {
        sqlx::query(
            "DELETE FROM rm_meta.projection_members WHERE group_id = $1 AND member_id = $2",
        )
        .bind(&self.group)
        .bind(self.member)
        .execute(pool)
        .await?;
        Ok(())
    }

    fn moved_to(&mut self, epoch: i64) {
        tracing::info!(
            group = self.group,
            from = self.epoch,
            to = epoch,
            "moving to the Kafka group of a new epoch"
        );
        self.epoch = epoch;
        self.orphaned_since = None;
    }

    /// The partitions of `all` that no worker seen within [`LIVENESS`] consumes in this epoch.
    async fn orphans(
        &self,
        pool: &PgPool,
        all: &[(String, i32)],
    ) -> Result<Vec<(String, i32)>, ProjectionError> {
        let (topics, numbers): (Vec<String>, Vec<i32>) = all.iter().cloned().unzip();
        let orphans: Vec<(String, i32)> = sqlx::query_as(
            "SELECT a.topic, a.partition FROM unnest($2::text[], $3::int[]) AS a(topic, partition)
             WHERE NOT EXISTS (
                 SELECT 1 FROM rm_meta.projection_members m
                 WHERE m.group_id = $1 AND m.epoch = $4
                   AND m.seen_at > now() - make_interval(secs => $5)
                   AND m.partitions @> jsonb_build_array(jsonb_build_array(a.topic, a.partition)))
             ORDER BY a.topic, a.partition",
        )
        .bind(&self.group)
        .bind(&topics)
        .bind(&numbers)
        .bind(self.epoch)
        .bind(LIVENESS.as_secs_f64())
        .fetch_all(pool)
        .await?;
        Ok(orphans)
    }
}

/// The group's epoch (its row is created by [`Membership::join`]).
async fn current_epoch(pool: &PgPool, group: &str) -> Result<i64, ProjectionError> {
    let epoch =
        sqlx::query_scalar("SELECT epoch FROM rm_meta.projection_groups WHERE group_id = $1")
            .bind(group)
            .fetch_one(pool)
            .await?;
    Ok(epoch)
}
