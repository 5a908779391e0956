/**
 * Fulfillment states: PENDING → PICKED → PACKED → SHIPPED → DELIVERED, and CANCELLED from
 * anything not yet shipped. Pure: the service applies a move with a conditional update.
 */
import { ConflictError } from "../errors";

export type FulfillmentStatus = "PENDING" | "PICKED" | "PACKED" | "SHIPPED" | "DELIVERED" | "CANCELLED";
export type FulfillmentVerb = "pick" | "pack" | "ship" | "deliver" | "cancel";

export const FULFILLMENT_STATUSES: readonly FulfillmentStatus[] = ["PENDING", "PICKED", "PACKED", "SHIPPED", "DELIVERED", "CANCELLED"];
export const FULFILLMENT_VERBS: readonly FulfillmentVerb[] = ["pick", "pack", "ship", "deliver", "cancel"];

const MOVES: Record<FulfillmentVerb, { from: readonly FulfillmentStatus[]; to: FulfillmentStatus }> = {
	pick: { from: ["PENDING"], to: "PICKED" },
	pack: { from: ["PICKED"], to: "PACKED" },
	ship: { from: ["PACKED"], to: "SHIPPED" },
	deliver: { from: ["SHIPPED"], to: "DELIVERED" },
	cancel: { from: ["PENDING", "PICKED", "PACKED"], to: "CANCELLED" },
};

/** The statuses a fulfillment can still be cancelled from. */
export const CANCELLABLE: readonly FulfillmentStatus[] = MOVES.cancel.from;

/** The status `verb` leads to from `from`; 409 ILLEGAL_TRANSITION when it is not allowed. */
export function transition(from: FulfillmentStatus, verb: FulfillmentVerb): FulfillmentStatus {
	const move = MOVES[verb];
	if (!move.from.includes(from)) throw new ConflictError(`Cannot ${verb} a fulfillment that is ${from}`, "ILLEGAL_TRANSITION", { from, verb });
	return move.to;
}

/**
 * Whether an order has reached what `verb` reports once its fulfillments have these statuses:
 * every fulfillment that is not cancelled is shipped (or further) after "ship", delivered after "deliver".
 */
export function orderComplete(statuses: readonly FulfillmentStatus[], verb: "ship" | "deliver"): boolean {
	const live = statuses.filter(s => s !== "CANCELLED");
	const reached: readonly FulfillmentStatus[] = verb === "ship" ? ["SHIPPED", "DELIVERED"] : ["DELIVERED"];
	return live.length > 0 && live.every(s => reached.includes(s));
}
