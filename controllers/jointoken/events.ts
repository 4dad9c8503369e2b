/**
 * The Kubernetes Events of the JoinToken controller, decided from the
 * token's state and the Ready reason it last published: an event marks the
 * moment a token stops being usable (so a retry after a failed status write
 * repeats the event, which the recorder counts up rather than duplicates).
 */
import type { TokenRow } from "../../lib/state/index.js";
import type { PlannedEvent } from "../runtime/index.js";
import type { TokenState } from "./plan.js";

/** Reasons of JoinToken events. */
export const TokenEventReasons = {
  TokenCreated: "TokenCreated",
  TokenExpired: "TokenExpired",
  TokenExhausted: "TokenExhausted",
  TokenRevoked: "TokenRevoked",
} as const;

/** The event of a token stored for the first time. */
export function tokenCreatedEvent(cluster: string, expiresAt: Date, maxUses: number): PlannedEvent {
  return { type: "Normal", reason: TokenEventReasons.TokenCreated, message: `join token for cluster ${cluster} created: ${maxUses} use(s), expires at ${expiresAt.toISOString()}` };
}

/** The event of a token that became unusable since its published Ready reason (none while it stays as it was). */
export function tokenStateEvents(publishedReason: string | undefined, state: TokenState, row: Pick<TokenRow, "used" | "maxUses" | "expiresAt">): PlannedEvent[] {
  if (state === publishedReason || state === "Active") return [];
  switch (state) {
    case "Expired":
      return [{ type: "Normal", reason: TokenEventReasons.TokenExpired, message: `join token expired at ${row.expiresAt.toISOString()} after ${row.used} of ${row.maxUses} use(s); its Secret is deleted` }];
    case "Exhausted":
      return [{ type: "Normal", reason: TokenEventReasons.TokenExhausted, message: `join token used ${row.used} of ${row.maxUses} time(s); its Secret is deleted` }];
    case "Revoked":
      return [{ type: "Normal", reason: TokenEventReasons.TokenRevoked, message: "join token revoked (spec.revoked); its Secret is deleted and no node can join with it" }];
  }
}
