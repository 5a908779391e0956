/**
 * Who may review what (API.md: 403 NOT_A_BUYER unless the customer has a delivered order containing
 * the product), as the reviews service learns it from `orders.order.delivered`. Pure, so that the
 * consumer's convergence is property-tested (issue 8): one eligibility per (customer, product),
 * credited to the smallest order id that delivered it, whatever the order and duplication of events.
 */

export interface Eligibility {
	customerId: string;
	productId: string;
	orderId: string;
}

/** The eligibilities a delivered order gives (one per distinct product). */
export function eligibilitiesOf(e: { orderId: string; customerId: string; items: readonly { productId: string }[] }): Eligibility[] {
	return [...new Set(e.items.map(i => i.productId))].map(productId => ({ customerId: e.customerId, productId, orderId: e.orderId }));
}

/** Which order an eligibility held and a new one should be credited to: the smaller id, so the result does not depend on arrival order. */
export function creditedOrder(held: string | null | undefined, incoming: string): string {
	return held && held <= incoming ? held : incoming;
}
