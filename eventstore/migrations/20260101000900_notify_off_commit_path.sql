-- Append wake-ups leave the commit path.
--
-- The statement trigger below sent `pg_notify('commerce_events', '')` inside every append
-- transaction. NOTIFY takes a cluster-wide lock while its transaction commits, so concurrent
-- appends committed one at a time (measured: about half the command throughput at 8-32
-- writers). The engine now signals appends in-process and sends `NOTIFY commerce_events` from
-- a separate connection, debounced, after the commit (crate commerce-eventstore,
-- src/wakeup.rs); tailers keep LISTENing on the same channel and keep polling.
DROP TRIGGER IF EXISTS events_notify ON events;
DROP FUNCTION IF EXISTS events_notify_append();
