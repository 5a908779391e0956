/**
 * Fulfillment states: PENDING → PICKED → PACKED → SHIPPED → DELIVERED, and CANCELLED from
 * anything not yet shipped.
 */
import { ConflictError } from "../errors";

export type FulfillmentStatus = "PENDING" | "PICKED" | "PACKED" | "SHIPPED" | "DELIVERED" | "CANCELLED";
export type FulfillmentVerb = "pick" | "pack" | "ship" | "deliver" | "cancel";

const MOVES: Record<FulfillmentVerb, { from: FulfillmentStatus[]; to: FulfillmentStatus }> = {
	pick: { from: ["PENDING"], to: "PICKED" },
	pack: { from: ["PICKED"], to: "PACKED" },
	ship: { from: ["PACKED"], to: "SHIPPED" },
	deliver: { from: ["SHIPPED"], to: "DELIVERED" },
	cancel: { from: ["PENDING", "PICKED", "PACKED"], to: "CANCELLED" },
};

export function transition(from: FulfillmentStatus, verb: FulfillmentVerb): FulfillmentStatus {
	const move = MOVES[verb];
	if (!move.from.includes(from)) throw new ConflictError(`Cannot ${verb} a fulfillment that is ${from}`, "ILLEGAL_TRANSITION");
	return move.to;
}
