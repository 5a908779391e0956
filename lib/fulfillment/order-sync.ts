/**
 * Fulfillment's synchronous calls beside its events (issue 8, docs/EVENTS.md "Read-your-writes"):
 * when an operator's `ship` or last `deliver` answers, the order already reads SHIPPED / DELIVERED.
 * The calls are idempotent and apply the same convergent rule as the events (lib/orders/transitions.ts),
 * so the event arriving before, after or at the same time changes nothing more.
 */
import type { Context, Service } from "moleculer";
import { ConflictError } from "../errors";

const ORDER_SYNC_TIMEOUT_MS = 3000;

/**
 * Moves the order after a ship (`orders.markShipped`) or a delivery (`orders.markDelivered`). A
 * failure (orders down, order not confirmed yet) is logged with the order id and left to the
 * event, which the bus redelivers until it applies: the operator's move itself stands.
 */
export async function syncOrder(ctx: Context, logger: Service["logger"], orderId: string, verb: "ship" | "deliver", orderComplete: boolean): Promise<void> {
	try {
		if (verb === "ship") await ctx.call("orders.markShipped", { orderId }, { timeout: ORDER_SYNC_TIMEOUT_MS, retries: 1 });
		else await ctx.call("orders.markDelivered", { orderId, orderComplete }, { timeout: ORDER_SYNC_TIMEOUT_MS, retries: 1 });
	} catch (err) {
		logger.warn(`Order not updated synchronously after ${verb}; its event will converge it`, { orderId, error: (err as Error).message });
	}
}

/**
 * API.md: `ship` of an order whose payment is fully refunded → 409 PAYMENT_REFUNDED. Asks payments
 * (`payments.byOrder`); the order's live payment is the newest one that did not fail. When payments
 * is not deployed on the cluster the check cannot be made and the ship goes on (logged by the caller's retry).
 */
export async function assertPaymentNotRefunded(ctx: Context, orderId: string): Promise<void> {
	let payments: { status: string }[];
	try {
		payments = await ctx.call("payments.byOrder", { orderId }, { timeout: ORDER_SYNC_TIMEOUT_MS, retries: 1 });
	} catch (err) {
		if ((err as any)?.name === "ServiceNotFoundError") return;
		throw err;
	}
	const live = payments.filter(p => p.status !== "FAILED");
	const latest = live[live.length - 1];
	if (latest?.status === "REFUNDED") throw new ConflictError("The order's payment is refunded; it cannot ship", "PAYMENT_REFUNDED", { orderId });
}
