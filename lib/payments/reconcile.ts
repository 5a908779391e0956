/**
 * Payment reconciliation rules (issue 8; DOMAIN.md invariant 3: "no authorization is left open on
 * a terminal order", captured − refunded is 0 on a REJECTED/CANCELLED order). Pure: the payments
 * reconciler (services/commerce/payments-reconciler.mixin.ts) asks orders for the outcomes and
 * applies what this decides, each repair idempotent on a key derived from the payment.
 */
import type { Context, Service } from "moleculer";

/** A payment as the reconciler reads it (amounts in cents). */
export interface PaymentView {
	id: string;
	orderId: string;
	status: string;
	captured: number;
	refunded: number;
}

export type RepairAction = "void" | "refund" | "cancel-order";

export interface Repair {
	action: RepairAction;
	paymentId: string;
	orderId: string;
	/** Why, for the log and the REPL: the payment's and the order's status. */
	reason: string;
	/** Cents to refund (refund only). */
	amount?: number;
}

/** Order statuses after which no money may stay held or taken (API.md order statuses). */
export const MONEY_FREE_STATUSES = ["REJECTED", "CANCELLED"] as const;

/**
 * What to repair for one payment given its order's status (null: the order is unknown to orders,
 * so nothing is decided). An open authorisation on a REJECTED/CANCELLED order → void; money
 * captured and not refunded on such an order → refund the rest; a payment refunded in full on an
 * order still CONFIRMED (its cancellation lost) → cancel the order (API.md: a full refund before
 * shipment cancels it).
 */
export function decideRepair(p: PaymentView, orderStatus: string | null): Repair | null {
	if (orderStatus === null) return null;
	const moneyFree = (MONEY_FREE_STATUSES as readonly string[]).includes(orderStatus);
	const reason = `payment ${p.status} on a ${orderStatus} order`;
	if (p.status === "AUTHORIZED" && moneyFree) return { action: "void", paymentId: p.id, orderId: p.orderId, reason };
	const left = Number(p.captured) - Number(p.refunded);
	if ((p.status === "CAPTURED" || p.status === "PARTIALLY_REFUNDED") && moneyFree && left > 0) return { action: "refund", paymentId: p.id, orderId: p.orderId, reason, amount: left };
	if (p.status === "REFUNDED" && orderStatus === "CONFIRMED") return { action: "cancel-order", paymentId: p.id, orderId: p.orderId, reason };
	return null;
}

/** The idempotency key of a repair: one per payment and action, so repeating a pass repeats nothing. */
export function repairKey(r: Pick<Repair, "action" | "paymentId">): string {
	return `reconcile:${r.action}:${r.paymentId}`;
}

/** What payments tells orders after an operator's refund (orders.refundApplied). */
export interface RefundNotice {
	orderId: string;
	refundId: string;
	/** Cents. */
	refundAmount: number;
	fullyRefunded: boolean;
	occurredAt: string;
}

/**
 * Tells orders about an operator's refund, synchronously (read-your-writes: the order is cancelled
 * or shows the refund when the admin's call answers). A failure is logged with the ids and left to
 * the `payments.payment.refunded` event, which applies the same rule, and to the reconciler.
 */
export async function tellOrder(ctx: Context, logger: Service["logger"], n: RefundNotice): Promise<void> {
	try {
		await ctx.call("orders.refundApplied", n, { timeout: 20_000, retries: 0 });
	} catch (err) {
		logger.warn("Order not updated synchronously after a refund; its event and the reconciler will", { orderId: n.orderId, refundId: n.refundId, error: (err as Error).message });
	}
}
