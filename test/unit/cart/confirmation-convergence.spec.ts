/**
 * The cart consumer converges (issue 8): confirmations of a customer's orders, delivered in any
 * order, duplicated and concurrently, clear the same lines as in-order delivery — those put in no
 * later than a confirmation — and never a line added after it.
 */
import fc from "fast-check";
import { type CartLineStamp, type Confirmation, clearedBy } from "../../../lib/cart/confirmation";
import { type ConsumerModel, delivered, deliveries, inOrder } from "../support/convergence";

const PRODUCTS = ["p1", "p2", "p3", "p4"];
const iso = (minute: number) => new Date(Date.UTC(2026, 0, 1, 0, minute)).toISOString();

describe("cart consumer", () => {
	it("clears the same lines whatever the order, duplication and concurrency of confirmations", () => {
		// A line put in at some minute, its quantity perhaps changed some minutes later.
		const line = fc
			.record({ productId: fc.constantFrom(...PRODUCTS), added: fc.integer({ min: 0, max: 60 }), changed: fc.option(fc.integer({ min: 0, max: 30 }), { nil: undefined }) })
			.map(({ productId, added, changed }): CartLineStamp => (changed === undefined ? { productId, addedAt: iso(added) } : { productId, addedAt: iso(added), changedAt: iso(added + changed) }));
		const lines = fc.uniqueArray(line, { selector: l => l.productId, maxLength: 4 });
		const confirmations = fc.array(fc.record({ at: fc.integer({ min: 0, max: 60 }).map(iso) }), { minLength: 1, maxLength: 4 });
		fc.assert(
			fc.property(lines, confirmations.chain(cs => fc.tuple(fc.constant(cs), deliveries(cs))), (initial, [cs, d]) => {
				const model: ConsumerModel<CartLineStamp[], Confirmation> = {
					initial,
					apply: (held, c) => (held.some(l => clearedBy(l, c)) ? held.filter(l => !clearedBy(l, c)) : held),
				};
				const expected = inOrder(model, cs);
				expect(delivered(model, d)).toEqual(expected);
				// What stays is exactly what no confirmation covers.
				expect(expected).toEqual(initial.filter(l => !cs.some(c => (l.changedAt ?? l.addedAt) <= c.at)));
			}),
			{ numRuns: 300 },
		);
	});

	it("keeps a product added after the order was confirmed", () => {
		expect(clearedBy({ productId: "p1", addedAt: iso(5) }, { at: iso(4) })).toBe(false);
		expect(clearedBy({ productId: "p1", addedAt: iso(4) }, { at: iso(4) })).toBe(true);
	});

	it("keeps a line whose quantity changed after the order was confirmed, clears one changed before", () => {
		expect(clearedBy({ productId: "p1", addedAt: iso(1), changedAt: iso(5) }, { at: iso(4) })).toBe(false);
		expect(clearedBy({ productId: "p1", addedAt: iso(1), changedAt: iso(3) }, { at: iso(4) })).toBe(true);
	});
});
