/**
 * The cart as the customer sees it: stored lines priced at the catalog's current prices.
 * Products that are no longer sold (archived, draft or gone) drop out of the view.
 */
export const MAX_QUANTITY = 99;
/** Distinct products in one cart; keeps a cart's catalog look-up one bounded call. */
export const MAX_LINES = 100;

export interface Money {
	amount: number;
	currency: string;
}

export interface CartLine {
	productId: string;
	quantity: number;
}

/** What the cart needs of `catalog.getMany`. */
export interface CatalogProduct {
	id: string;
	name: string;
	price: Money;
	status: string;
}

export interface CartItemView {
	productId: string;
	name: string;
	unitPrice: Money;
	quantity: number;
	lineTotal: Money;
}

export interface CartView {
	items: CartItemView[];
	subtotal: Money;
	itemCount: number;
}

const CURRENCY = "USD";

/** The lines whose product is on sale now, in the cart's order. */
export function sellableLines<L extends CartLine>(lines: readonly L[], products: readonly CatalogProduct[]): { line: L; product: CatalogProduct }[] {
	const active = new Map(products.filter(p => p.status === "active").map(p => [p.id, p]));
	return lines.flatMap(line => {
		const product = active.get(line.productId);
		return product ? [{ line, product }] : [];
	});
}

export function priceCart(lines: readonly CartLine[], products: readonly CatalogProduct[]): CartView {
	const items = sellableLines(lines, products).map(({ line, product }) => ({
		productId: product.id,
		name: product.name,
		unitPrice: { amount: product.price.amount, currency: product.price.currency },
		quantity: line.quantity,
		lineTotal: { amount: product.price.amount * line.quantity, currency: product.price.currency },
	}));
	return {
		items,
		subtotal: { amount: items.reduce((n, i) => n + i.lineTotal.amount, 0), currency: CURRENCY },
		itemCount: items.reduce((n, i) => n + i.quantity, 0),
	};
}
