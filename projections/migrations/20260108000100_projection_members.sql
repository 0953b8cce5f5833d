-- The projection workers' own record of their group, kept beside the broker's: which partitions
-- each worker consumes, seen recently, and the epoch naming the Kafka consumer group they meet in.
-- A partition no live worker consumes for long means the broker's group coordinator is stuck
-- (Tansu 0.6 keeps a dead member's assignment after expiring it: RELIABILITY.md finding 10); the
-- workers then bump the epoch and meet again in a fresh Kafka group.
CREATE TABLE rm_meta.projection_groups (
    group_id  text        PRIMARY KEY,
    epoch     bigint      NOT NULL DEFAULT 0,
    bumped_at timestamptz NOT NULL DEFAULT now()
);

-- One row per running worker, refreshed every second; `partitions` holds `[topic, partition]`
-- pairs it consumes (assigned and not fenced) in the Kafka group of `epoch`.
CREATE TABLE rm_meta.projection_members (
    group_id   text        NOT NULL,
    member_id  uuid        NOT NULL,
    epoch      bigint      NOT NULL,
    partitions jsonb       NOT NULL,
    seen_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, member_id)
);
