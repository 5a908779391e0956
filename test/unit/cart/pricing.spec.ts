import { priceCart, sellableLines } from "../../../lib/cart/pricing";

const product = (id: string, amount: number, status = "active") => ({ id, name: `Product ${id}`, price: { amount, currency: "USD" }, status });

describe("pricing a cart", () => {
	it("prices every line at the catalog's current price, keeps the cart's order, and sums subtotal and item count", () => {
		expect(priceCart([{ productId: "b", quantity: 2 }, { productId: "a", quantity: 3 }], [product("a", 1999), product("b", 250)])).toEqual({
			items: [
				{ productId: "b", name: "Product b", unitPrice: { amount: 250, currency: "USD" }, quantity: 2, lineTotal: { amount: 500, currency: "USD" } },
				{ productId: "a", name: "Product a", unitPrice: { amount: 1999, currency: "USD" }, quantity: 3, lineTotal: { amount: 5997, currency: "USD" } },
			],
			subtotal: { amount: 6497, currency: "USD" },
			itemCount: 5,
		});
	});

	it("leaves out products that are archived, drafts or gone from the catalog", () => {
		const lines = [{ productId: "a", quantity: 1 }, { productId: "archived", quantity: 4 }, { productId: "draft", quantity: 1 }, { productId: "gone", quantity: 2 }];
		const products = [product("a", 100), product("archived", 900, "archived"), product("draft", 900, "draft")];
		expect(priceCart(lines, products)).toEqual({
			items: [{ productId: "a", name: "Product a", unitPrice: { amount: 100, currency: "USD" }, quantity: 1, lineTotal: { amount: 100, currency: "USD" } }],
			subtotal: { amount: 100, currency: "USD" },
			itemCount: 1,
		});
		expect(sellableLines(lines, products)).toEqual([{ line: lines[0], product: products[0] }]);
	});

	it("shows an empty cart as zero", () => {
		expect(priceCart([], [])).toEqual({ items: [], subtotal: { amount: 0, currency: "USD" }, itemCount: 0 });
	});
});
