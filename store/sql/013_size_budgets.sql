-- What one contact and one event may weigh (docs/reliability.md, "Security"): a contact's
-- properties travel in every enrollment's workflow input and an event's in the signal
-- that delivers it, and Temporal refuses a payload over 2 MB. Rows written before the rule
-- are not checked (NOT VALID); every new write is.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'contact_too_large') THEN
        ALTER TABLE contacts ADD CONSTRAINT contact_too_large
            CHECK (octet_length(properties::text) <= 262144) NOT VALID;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'event_too_large') THEN
        ALTER TABLE events ADD CONSTRAINT event_too_large
            CHECK (octet_length(properties::text) <= 65536) NOT VALID;
    END IF;
END $$;
