/**
 * What a confirmed order clears from its customer's cart (DOMAIN.md: cart "clear on confirm"),
 * so that the cart converges whatever the order, duplication or delay of `orders.order.confirmed`
 * (issue 8): the cart empties, but only of the lines put in or last changed no later than the
 * confirmation. A product added, or a quantity changed, after the order was confirmed stays, even
 * when a paused node delivers the confirmation late (issue 7 adversary F3: a changed line was
 * deleted by its first add time). Pure; the cart service applies it as one conditional DELETE.
 */

export interface CartLineStamp {
	productId: string;
	/** When the line was put in the cart (ISO 8601). */
	addedAt: string;
	/** When its quantity last changed (ISO 8601); absent on lines from before that was kept. */
	changedAt?: string;
}

export interface Confirmation {
	/** The order's confirmation time (the event's `occurredAt`, ISO 8601). */
	at: string;
}

export function clearedBy(line: CartLineStamp, c: Confirmation): boolean {
	return (line.changedAt ?? line.addedAt) <= c.at;
}
