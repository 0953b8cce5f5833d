-- Deadlines whose command failed wait before they are tried again (crate commerce-workflows).
--
-- attempts    failed attempts since the deadline was last (re-)timed (0 when none failed);
-- retry_at    not tried again before this time (NULL when none failed, once it has fired,
--             or after it was re-timed); growing with each failure, so a deadline that keeps
--             failing neither holds the runner in a loop nor keeps the deadlines due after it
--             from firing;
-- last_error  why the last attempt failed, for an operator.

ALTER TABLE deadlines
    ADD COLUMN attempts   integer NOT NULL DEFAULT 0,
    ADD COLUMN retry_at   timestamptz,
    ADD COLUMN last_error text;
