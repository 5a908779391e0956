import { planFulfillments } from "../../../lib/fulfillment/plan";
import { FULFILLMENT_STATUSES, FULFILLMENT_VERBS, type FulfillmentStatus, type FulfillmentVerb, orderComplete, transition } from "../../../lib/fulfillment/state";

const LEGAL: Record<string, FulfillmentStatus> = {
	"PENDING pick": "PICKED",
	"PICKED pack": "PACKED",
	"PACKED ship": "SHIPPED",
	"SHIPPED deliver": "DELIVERED",
	"PENDING cancel": "CANCELLED",
	"PICKED cancel": "CANCELLED",
	"PACKED cancel": "CANCELLED",
};

describe("the fulfillment state machine", () => {
	const every = FULFILLMENT_STATUSES.flatMap(from => FULFILLMENT_VERBS.map(verb => [from, verb] as [FulfillmentStatus, FulfillmentVerb]));

	it("knows every status and verb pair: 7 legal moves, 23 illegal ones", () => {
		expect(every).toHaveLength(30);
		expect(every.filter(([from, verb]) => LEGAL[`${from} ${verb}`])).toHaveLength(7);
	});

	it.each(every.filter(([from, verb]) => LEGAL[`${from} ${verb}`]))("moves %s by %s", (from, verb) => {
		expect(transition(from, verb)).toBe(LEGAL[`${from} ${verb}`]);
	});

	it.each(every.filter(([from, verb]) => !LEGAL[`${from} ${verb}`]))("refuses to move %s by %s with 409 ILLEGAL_TRANSITION", (from, verb) => {
		expect(() => transition(from, verb)).toThrow(expect.objectContaining({ code: 409, type: "ILLEGAL_TRANSITION", data: { from, verb } }));
	});

	it("calls an order shipped once every fulfillment that is not cancelled has shipped, delivered once every one is delivered", () => {
		expect(orderComplete(["SHIPPED", "PACKED"], "ship")).toBe(false);
		expect(orderComplete(["SHIPPED", "DELIVERED", "CANCELLED"], "ship")).toBe(true);
		expect(orderComplete(["DELIVERED", "SHIPPED"], "deliver")).toBe(false);
		expect(orderComplete(["DELIVERED", "DELIVERED"], "deliver")).toBe(true);
		expect(orderComplete(["CANCELLED"], "deliver")).toBe(false);
		expect(orderComplete([], "ship")).toBe(false);
	});
});

describe("planning fulfillments from allocations", () => {
	it("makes one per warehouse, in order of first appearance, merging a sku allocated twice in one warehouse", () => {
		expect(
			planFulfillments([
				{ warehouseId: "wh-east", sku: "A", quantity: 2 },
				{ warehouseId: "wh-west", sku: "A", quantity: 1 },
				{ warehouseId: "wh-east", sku: "B", quantity: 1 },
				{ warehouseId: "wh-east", sku: "A", quantity: 3 },
			]),
		).toEqual([
			{ warehouseId: "wh-east", items: [{ sku: "A", quantity: 5 }, { sku: "B", quantity: 1 }] },
			{ warehouseId: "wh-west", items: [{ sku: "A", quantity: 1 }] },
		]);
		expect(planFulfillments([])).toEqual([]);
	});
});
