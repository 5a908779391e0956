/**
 * The lines of a checkout given by the client (POST /orders `items`): one line per product, as in
 * the cart. A product named twice is refused (422), not merged: the 1..99 per-product rule is
 * checked on each line by the parameter schema, and three lines of 99 would otherwise order 297
 * (issue 9). To order more of a product, raise its line's quantity.
 */
import { UnprocessableError } from "../errors";

export function checkDistinctLines(items: readonly { productId: string }[] | undefined): void {
	if (!items) return;
	const seen = new Map<string, number>();
	items.forEach((item, i) => {
		const first = seen.get(item.productId);
		if (first !== undefined) {
			const field = `items[${i}].productId`;
			throw new UnprocessableError(`Product ${item.productId} is already in items[${first}]; give each product one line with its whole quantity`, "DUPLICATE_LINE", [
				{ field, message: `same product as items[${first}]` },
			]);
		}
		seen.set(item.productId, i);
	});
}
