/**
 * What a confirmed order clears from its customer's cart (DOMAIN.md: cart "clear on confirm"),
 * so that the cart converges whatever the order, duplication or delay of `orders.order.confirmed`
 * (issue 8): a line goes when its product is in the order and it was put in the cart no later than
 * the confirmation. A product added again after the order was confirmed stays, even when a paused
 * node delivers the confirmation late. Pure; the cart service applies it as one conditional DELETE.
 */

export interface CartLineStamp {
	productId: string;
	/** When the line was put in the cart (ISO 8601). */
	addedAt: string;
}

export interface Confirmation {
	productIds: readonly string[];
	/** The order's confirmation time (the event's `occurredAt`, ISO 8601). */
	at: string;
}

export function clearedBy(line: CartLineStamp, c: Confirmation): boolean {
	return c.productIds.includes(line.productId) && line.addedAt <= c.at;
}
