/**
 * How an order's status follows what fulfillment reports (issue 8, API.md "ship moves the order to
 * SHIPPED, deliver to DELIVERED once all its fulfillments are delivered"). Pure: the orders service
 * applies the decision to the row it holds locked, with a conditional update on its version.
 *
 * The rule converges whatever the order, duplication or concurrency of the facts: a fact only ever
 * moves the order forward along PENDING → CONFIRMED → SHIPPED → DELIVERED, and a fact implies what
 * came before it (a complete delivery implies the shipment), so the history it skipped is written too.
 * A fact that arrives before the order is CONFIRMED is not dropped: the caller must retry it later.
 */

export type OrderStatus = "PENDING" | "CONFIRMED" | "SHIPPED" | "DELIVERED" | "REJECTED" | "CANCELLED";

/** What a fulfillment event (or the operator's synchronous call) says about the order. */
export type FulfillmentFact = { kind: "shipped" } | { kind: "delivered"; orderComplete: boolean };

export interface HistoryEntry {
	status: string;
	at: string;
}

export type Decision =
	/** Move to `status`, appending `entries` (the skipped statuses first) to the history. */
	| { kind: "advance"; status: OrderStatus; entries: HistoryEntry[] }
	/** Already there or beyond, or terminal: nothing to change, the fact is applied. */
	| { kind: "noop"; reason: string }
	/** The order is not CONFIRMED yet: try again later (the bus redelivers). */
	| { kind: "retry"; reason: string };

const FORWARD: OrderStatus[] = ["PENDING", "CONFIRMED", "SHIPPED", "DELIVERED"];

/** The status a fact leads to, at least. */
function target(fact: FulfillmentFact): OrderStatus {
	if (fact.kind === "shipped") return "SHIPPED";
	return fact.orderComplete ? "DELIVERED" : "SHIPPED";
}

/**
 * Decides what a fulfillment fact does to an order that is `status` now. `at` is the time written
 * in the history for every status entered (ISO 8601).
 */
export function decideFulfillmentFact(status: OrderStatus, fact: FulfillmentFact, at: string): Decision {
	if (status === "REJECTED" || status === "CANCELLED") return { kind: "noop", reason: `order is ${status}` };
	if (status === "PENDING") return { kind: "retry", reason: "order is not confirmed yet" };
	const from = FORWARD.indexOf(status);
	const to = FORWARD.indexOf(target(fact));
	if (to <= from) return { kind: "noop", reason: `order is already ${status}` };
	return { kind: "advance", status: FORWARD[to], entries: FORWARD.slice(from + 1, to + 1).map(s => ({ status: s, at })) };
}

/** The order events a move from `from` to `to` records, one per status entered (shipped, then delivered). */
export function statusesEntered(from: OrderStatus, to: OrderStatus): OrderStatus[] {
	const i = FORWARD.indexOf(from);
	const j = FORWARD.indexOf(to);
	return i < 0 || j <= i ? [] : FORWARD.slice(i + 1, j + 1);
}

/** An operator's refund as the order records it (API.md: `refunds: [{ amount, at }]`, `refundedTotal`). */
export interface OrderRefund {
	/** The payment service's id for this refund: applying it twice records it once. */
	refundId: string;
	amount: number;
	at: string;
}

export type RefundDecision =
	/** Everything was refunded before any parcel shipped: the order is cancelled (DOMAIN.md invariant 3). */
	| { kind: "cancel" }
	/** Recorded on the order: the new list and total. */
	| { kind: "record"; refunds: OrderRefund[]; refundedTotal: number }
	| { kind: "noop"; reason: string }
	| { kind: "retry"; reason: string };

/**
 * What an operator's refund does to an order (API.md, POST /admin/payments/:id/refund): a refund of
 * everything while the order is CONFIRMED cancels it; any other refund of a live order is recorded on
 * it once (keyed by `refundId`), whatever the order and duplication of deliveries.
 */
export function decideRefund(status: OrderStatus, refunds: readonly OrderRefund[], refund: OrderRefund, fullyRefunded: boolean): RefundDecision {
	if (status === "PENDING") return { kind: "retry", reason: "order is not confirmed yet" };
	if (status === "REJECTED" || status === "CANCELLED") return { kind: "noop", reason: `order is ${status}` };
	if (refunds.some(r => r.refundId === refund.refundId)) return { kind: "noop", reason: "refund already recorded" };
	if (status === "CONFIRMED" && fullyRefunded) return { kind: "cancel" };
	const next = [...refunds, refund].sort((a, b) => (a.at === b.at ? a.refundId.localeCompare(b.refundId) : a.at.localeCompare(b.at)));
	return { kind: "record", refunds: next, refundedTotal: next.reduce((n, r) => n + r.amount, 0) };
}
