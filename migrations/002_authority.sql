-- Authority term of the control plane (controllers/runtime/authority.ts).
--
-- The elected leader increments `term` each time it gains the Kubernetes
-- Lease. Every mutating decision runs in a transaction that first reads this
-- row FOR SHARE and aborts unless the term is still the one its leader
-- acquired, so a deposed leader's writes are refused. Holding the share lock
-- also makes a new leader's increment wait for decisions already in flight.
CREATE TABLE authority (
  id         int PRIMARY KEY DEFAULT 1 CHECK (id = 1),
  term       bigint NOT NULL,
  holder     text,
  updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO authority (id, term, holder) VALUES (1, 0, NULL);
