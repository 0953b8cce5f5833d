-- Relay schema (crate commerce-relay): the cursor of a relay that reads another event store.
--
-- A relay on PostgreSQL's global log keeps its (transaction_id, position) cursor in the typed
-- columns. A relay on another backend (KurrentDB's $all) keeps its cursor here, in the
-- backend's own text form ("commit:prepare"); NULL means "from the beginning". Both move only
-- after the broker acknowledged every event up to them.
ALTER TABLE relay_cursor ADD COLUMN IF NOT EXISTS source_cursor text;
