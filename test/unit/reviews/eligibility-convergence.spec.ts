/**
 * The reviews consumer converges (issue 8): delivered orders, delivered in any order, duplicated
 * and concurrently, leave the same eligibilities as in-order delivery — one per customer and
 * product, credited to the same order.
 */
import fc from "fast-check";
import { creditedOrder, eligibilitiesOf } from "../../../lib/reviews/eligibility";
import { type ConsumerModel, delivered, deliveries, inOrder } from "../support/convergence";

interface Delivered {
	orderId: string;
	customerId: string;
	items: { productId: string }[];
}
type Eligible = Record<string, string>;

const model: ConsumerModel<Eligible, Delivered> = {
	initial: {},
	apply(held, e) {
		let next = held;
		for (const el of eligibilitiesOf(e)) {
			const key = `${el.customerId}/${el.productId}`;
			const order = creditedOrder(held[key], el.orderId);
			if (order !== held[key]) next = { ...next, [key]: order };
		}
		return next;
	},
};

const orders = fc.uniqueArray(
	fc.record({ orderId: fc.uuid(), customerId: fc.constantFrom("c1", "c2"), items: fc.array(fc.record({ productId: fc.constantFrom("p1", "p2", "p3") }), { minLength: 1, maxLength: 3 }) }),
	{ selector: o => o.orderId, minLength: 1, maxLength: 6 },
);

describe("reviews consumer", () => {
	it("makes the same customers eligible for the same products, credited to the same orders, whatever the delivery", () => {
		fc.assert(
			fc.property(orders.chain(os => fc.tuple(fc.constant(os), deliveries(os))), ([os, d]) => {
				const expected = inOrder(model, os);
				expect(Object.keys(expected).sort()).toEqual([...new Set(os.flatMap(o => o.items.map(i => `${o.customerId}/${i.productId}`)))].sort());
				expect(delivered(model, d)).toEqual(expected);
			}),
			{ numRuns: 300 },
		);
	});
});
