/**
 * The orders consumer converges (issue 8): shipped/delivered facts of every parcel, delivered in
 * any order, duplicated and by concurrent handlers, plus the saga's confirmation arriving late,
 * leave the order where in-order delivery leaves it — DELIVERED with its whole history — and
 * operators' refunds are recorded once each, whatever their order.
 */
import fc from "fast-check";
import { type FulfillmentFact, type OrderRefund, type OrderStatus, decideFulfillmentFact, decideRefund } from "../../../lib/orders/transitions";
import { type ConsumerModel, RETRY, delivered, deliveries, inOrder } from "../support/convergence";

interface Order {
	status: OrderStatus;
	history: string[];
}
type OrderEvent = { kind: "confirmed" } | ({ parcel: number } & FulfillmentFact);

const orderModel: ConsumerModel<Order, OrderEvent> = {
	initial: { status: "PENDING", history: ["PENDING"] },
	apply(o, e) {
		if (e.kind === "confirmed") return o.status === "PENDING" ? { status: "CONFIRMED", history: [...o.history, "CONFIRMED"] } : o;
		const d = decideFulfillmentFact(o.status, e, "2026-01-01T00:00:00.000Z");
		if (d.kind === "retry") return RETRY;
		if (d.kind === "noop") return o;
		return { status: d.status, history: [...o.history, ...d.entries.map(x => x.status)] };
	},
};

/** What operators did, in real time: each parcel shipped before it is delivered; the flags say whether the order was complete then. */
const operatorRuns = fc.integer({ min: 1, max: 3 }).chain(parcels =>
	fc.array(fc.nat(), { minLength: parcels * 2, maxLength: parcels * 2 }).map(keys => {
		const moves = Array.from({ length: parcels }, (_, p) => [{ p, verb: "ship" as const }, { p, verb: "deliver" as const }]).flat();
		const order = moves.map((m, i) => ({ m, k: keys[i] })).sort((a, b) => a.k - b.k).map(x => x.m);
		// Within a parcel, ship comes first.
		const seen = new Set<number>();
		const fixed = order.map(m => (m.verb === "deliver" && !seen.has(m.p) ? (seen.add(m.p), { ...m, verb: "ship" as const }) : (m.verb === "ship" && seen.has(m.p) ? { ...m, verb: "deliver" as const } : (seen.add(m.p), m))));
		const shipped = new Set<number>();
		const done = new Set<number>();
		const events: OrderEvent[] = [{ kind: "confirmed" }];
		for (const m of fixed) {
			if (m.verb === "ship") {
				shipped.add(m.p);
				events.push({ kind: "shipped", parcel: m.p });
			} else {
				done.add(m.p);
				events.push({ kind: "delivered", parcel: m.p, orderComplete: done.size === parcels });
			}
		}
		return events;
	}),
);

describe("orders consumer", () => {
	it("reaches the in-order state whatever the order, duplication and concurrency of shipped/delivered facts", () => {
		fc.assert(
			fc.property(
				operatorRuns.chain(events => fc.tuple(fc.constant(events), deliveries(events))),
				([events, d]) => {
					const expected = inOrder(orderModel, events);
					expect(expected).toEqual({ status: "DELIVERED", history: ["PENDING", "CONFIRMED", "SHIPPED", "DELIVERED"] });
					expect(delivered(orderModel, d)).toEqual(expected);
				},
			),
			{ numRuns: 500 },
		);
	});

	it("moves a CONFIRMED order to DELIVERED on a complete delivery, writing the shipment it skipped", () => {
		expect(decideFulfillmentFact("CONFIRMED", { kind: "delivered", orderComplete: true }, "t")).toEqual({ kind: "advance", status: "DELIVERED", entries: [{ status: "SHIPPED", at: "t" }, { status: "DELIVERED", at: "t" }] });
		expect(decideFulfillmentFact("CONFIRMED", { kind: "delivered", orderComplete: false }, "t")).toEqual({ kind: "advance", status: "SHIPPED", entries: [{ status: "SHIPPED", at: "t" }] });
		expect(decideFulfillmentFact("PENDING", { kind: "shipped" }, "t")).toEqual({ kind: "retry", reason: "order is not confirmed yet" });
		expect(decideFulfillmentFact("DELIVERED", { kind: "shipped" }, "t").kind).toBe("noop");
		expect(decideFulfillmentFact("CANCELLED", { kind: "delivered", orderComplete: true }, "t").kind).toBe("noop");
	});

	it("records each operator refund once, in the same list and total whatever the order and duplication", () => {
		interface Refunds {
			refunds: OrderRefund[];
			total: number;
		}
		const model: ConsumerModel<Refunds, OrderRefund> = {
			initial: { refunds: [], total: 0 },
			apply(s, r) {
				const d = decideRefund("SHIPPED", s.refunds, r, false);
				if (d.kind === "retry") return RETRY;
				return d.kind === "record" ? { refunds: d.refunds, total: d.refundedTotal } : s;
			},
		};
		const refunds = fc.uniqueArray(fc.record({ refundId: fc.uuid(), amount: fc.integer({ min: 1, max: 10_000 }), at: fc.date({ min: new Date(2026, 0, 1), max: new Date(2026, 11, 31), noInvalidDate: true }).map(d => d.toISOString()) }), { selector: r => r.refundId, minLength: 1, maxLength: 6 });
		fc.assert(
			fc.property(
				refunds.chain(rs => fc.tuple(fc.constant(rs), deliveries(rs))),
				([rs, d]) => {
					const expected = inOrder(model, rs);
					expect(expected.total).toBe(rs.reduce((n, r) => n + r.amount, 0));
					expect(delivered(model, d)).toEqual(expected);
				},
			),
			{ numRuns: 300 },
		);
	});

	it("cancels a CONFIRMED order refunded in full, and waits while the order is PENDING", () => {
		const r = { refundId: "r1", amount: 100, at: "t" };
		expect(decideRefund("CONFIRMED", [], r, true)).toEqual({ kind: "cancel" });
		expect(decideRefund("PENDING", [], r, true).kind).toBe("retry");
		expect(decideRefund("DELIVERED", [], r, true)).toEqual({ kind: "record", refunds: [r], refundedTotal: 100 });
		expect(decideRefund("CANCELLED", [], r, true).kind).toBe("noop");
	});
});
