-- How many times a curator worker has started this sync. A sync whose worker died (stale
-- heartbeat) is re-queued until it reaches the curator's SYNC_MAX_ATTEMPTS, then marked failed,
-- so no row stays `running` forever and a sync that kills its worker cannot loop.
ALTER TABLE sync_history ADD COLUMN IF NOT EXISTS attempts integer NOT NULL DEFAULT 0;
-- The curator's reaper looks for stale active rows.
CREATE INDEX IF NOT EXISTS sync_history_active_idx ON sync_history (status, heartbeat_at)
    WHERE status IN ('queued', 'running');
