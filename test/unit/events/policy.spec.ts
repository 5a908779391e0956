import { busNames, isValidEventName, retryDelay } from "../../../lib/bus/policy";

describe("retry schedule", () => {
	const policy = { baseMs: 1000, maxMs: 60_000 };

	it("doubles the wait after each failure, from the base to the cap", () => {
		const mid = () => 0.5; // no jitter
		expect([1, 2, 3, 4, 5, 6, 7, 8].map(n => retryDelay(n, policy, mid))).toEqual([1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000]);
	});

	it("spreads retries by ±20 % without ever passing the cap", () => {
		expect(retryDelay(1, policy, () => 0)).toBe(800);
		expect(retryDelay(1, policy, () => 1)).toBe(1200);
		expect(retryDelay(50, policy, () => 1)).toBe(60_000);
		expect(retryDelay(50, policy, () => 0)).toBe(48_000);
	});

	it("treats a nonsensical failure count as the first failure", () => {
		expect(retryDelay(0, policy, () => 0.5)).toBe(1000);
		expect(retryDelay(-3, policy, () => 0.5)).toBe(1000);
	});
});

describe("event names", () => {
	it("accepts <domain>.<entity>.<fact> names and refuses what is not a safe subject", () => {
		expect(["orders.order.confirmed", "catalog.product.created", "warehouse.stock.changed", "a.b"].every(isValidEventName)).toBe(true);
		expect(["orders", "Orders.order.confirmed", "orders.order.*", "orders.>", "orders order.x", "orders..x", "", "orders.order.confirmed."].some(isValidEventName)).toBe(false);
	});
});

describe("JetStream names", () => {
	it("put the namespace in every stream, subject and consumer name", () => {
		const n = busNames("staging");
		expect({
			stream: n.stream,
			dlq: n.dlqStream,
			subject: n.eventSubject("orders.order.confirmed"),
			all: n.eventSubjects,
			replay: n.replaySubject("cart"),
			dlqSubject: n.dlqSubject("cart", "orders.order.confirmed"),
			durable: n.durable("cart", "orders.order.confirmed"),
			replayDurable: n.replayDurable("cart"),
		}).toEqual({
			stream: "MC_staging_EVENTS",
			dlq: "MC_staging_DLQ",
			subject: "mc.staging.events.orders.order.confirmed",
			all: "mc.staging.events.>",
			replay: "mc.staging.replay.cart",
			dlqSubject: "mc.staging.dlq.cart.orders.order.confirmed",
			durable: "staging__cart__orders_order_confirmed",
			replayDurable: "staging__cart__replay",
		});
	});

	it("keep two namespaces apart and make any namespace a valid name", () => {
		expect(busNames("a").stream).not.toBe(busNames("b").stream);
		expect(busNames("").stream).toBe("MC_default_EVENTS");
		expect(busNames("test.run 1/x").eventSubjects).toBe("mc.test_run_1_x.events.>");
	});

	it("read the event name back from a subject of the namespace only", () => {
		const n = busNames("ns");
		expect(n.eventOf("mc.ns.events.orders.order.confirmed")).toBe("orders.order.confirmed");
		expect(n.eventOf("mc.other.events.orders.order.confirmed")).toBeNull();
	});
});
