/**
 * How long each command that a saga calls may take (ms), in one table that both sides read:
 *
 *  - the callee declares it as its action's `timeout` (Moleculer's action-level timeout: the
 *    default of every caller that gives none, the REPL's and the reconciler's included);
 *  - the saga calls the step or compensation with exactly that timeout (`sagaCall`).
 *
 * Why both: a remote call that times out counts against the callee's circuit breaker only when
 * the caller gave it the action's full time (lib/graceful.ts `notTheCalleesFault`, "caller's
 * budget"). Before this table the callees declared nothing, so their full time was the broker's
 * 10 s, while the saga called them with 3–5 s: the saga's own timeouts never counted, and a hung
 * replica beside a healthy one (a handler stuck on a lock, a frozen loop that still heartbeats)
 * kept taking every other step call, each waiting the full timeout
 * (test/e2e/adversary/inventory-hung-replica.spec.ts).
 *
 * Each value sits above the longest the callee itself may take: the payment provider answers
 * `tok_slow` after 2 s (payments.service.ts `slowTokenMs`); the warehouse and fulfillment commands are
 * one transaction each (fulfillment.create also books shipments, in its remaining budget).
 */
export const COMMAND_TIMEOUT_MS = {
	"payments.authorize": 5000,
	"payments.capture": 5000,
	"payments.void": 5000,
	"payments.refund": 5000,
	"warehouse.reserve": 3000,
	"warehouse.release": 3000,
	"warehouse.commit": 3000,
	"fulfillment.create": 3000,
	"fulfillment.cancel": 3000,
} as const;

/** A command a saga calls: one of COMMAND_TIMEOUT_MS's actions. */
export type SagaCommand = keyof typeof COMMAND_TIMEOUT_MS;

/** `{ action, timeout }` for a saga step or compensation: the action and the time its callee declares (ms). */
export function sagaCall<A extends SagaCommand>(action: A): { action: A; timeout: (typeof COMMAND_TIMEOUT_MS)[A] } {
	return { action, timeout: COMMAND_TIMEOUT_MS[action] };
}
