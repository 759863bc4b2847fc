-- Each claim of outbox events carries a token; marking them published requires the token still to be theirs.
-- A broker that lost its log (restore_unpublished) voids the claims in flight: an acknowledgement their publisher
-- got from the broker that then forgot it must not mark them published (the lifecycle machine caught an event lost
-- that way: acknowledged, the broker restarted, the restore ran, then the late mark made the loss permanent).
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS claim_token uuid;
