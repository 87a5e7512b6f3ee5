-- The relay looks up, for every batch of changes that holds events, the active journeys an
-- event starts: this partial index answers it without reading any other journey.
CREATE INDEX IF NOT EXISTS journeys_event_triggered ON journeys (workspace)
    WHERE status = 'active' AND (definition -> 'trigger') ? 'event';
