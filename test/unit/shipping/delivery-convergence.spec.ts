/**
 * The shipping consumer converges (issue 8): a parcel's delivery, arriving before its shipment is
 * visible, twice, or concurrently, ends with the shipment DELIVERED and exactly one DELIVERED
 * tracking event — what in-order delivery gives — because a delivery with no shipment yet is
 * retried instead of acknowledged.
 */
import fc from "fast-check";
import { deliveryDecision } from "../../../lib/shipping/tracking";
import { type ConsumerModel, RETRY, delivered, deliveries, inOrder } from "../support/convergence";

type Shipment = { status: string; events: string[] } | null;
type Fact = { kind: "created" } | { kind: "delivered" };

const model: ConsumerModel<Shipment, Fact> = {
	initial: null,
	apply(s, f) {
		if (f.kind === "created") return s ?? { status: "IN_TRANSIT", events: ["IN_TRANSIT"] };
		const d = deliveryDecision(s);
		if (d === "retry") return RETRY;
		if (d === "noop") return s;
		return { status: "DELIVERED", events: [...s!.events, "DELIVERED"] };
	},
};

describe("shipping consumer", () => {
	it("ends DELIVERED with one DELIVERED tracking event whatever the order, duplication and concurrency", () => {
		const facts: Fact[] = [{ kind: "created" }, { kind: "delivered" }];
		fc.assert(
			fc.property(deliveries(facts, 4), d => {
				const expected = inOrder(model, facts);
				expect(expected).toEqual({ status: "DELIVERED", events: ["IN_TRANSIT", "DELIVERED"] });
				expect(delivered(model, d)).toEqual(expected);
			}),
			{ numRuns: 300 },
		);
	});

	it("retries a delivery whose shipment is not there yet, and ignores a repeat", () => {
		expect(deliveryDecision(null)).toBe("retry");
		expect(deliveryDecision({ status: "IN_TRANSIT" })).toBe("deliver");
		expect(deliveryDecision({ status: "DELIVERED" })).toBe("noop");
	});
});
