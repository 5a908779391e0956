/**
 * A saga's retry after a timeout avoids the node that timed out when another has the action
 * available (mixins/saga.mixin.ts otherReplica); the e2e inventory-hung-replica.spec.ts shows why.
 */
import type { ServiceBroker } from "moleculer";
import { otherReplica } from "../../../mixins/saga.mixin";

/** A broker whose registry knows these endpoints of every action. */
const brokerWith = (endpoints: { id: string; isAvailable: boolean }[] | undefined) =>
	({ registry: { getActionEndpoints: () => (endpoints ? { endpoints } : undefined) } }) as unknown as ServiceBroker;

test("nothing to avoid: the broker's strategy picks", () => {
	expect(otherReplica(brokerWith([{ id: "a", isAvailable: true }, { id: "b", isAvailable: true }]), "warehouse.reserve", undefined)).toBeUndefined();
});

test("after a timeout on one node, the other available one", () => {
	for (let i = 0; i < 20; i++) expect(otherReplica(brokerWith([{ id: "hung", isAvailable: true }, { id: "ok", isAvailable: true }]), "warehouse.reserve", "hung")).toBe("ok");
});

test("never a node whose breaker is open, and any of several healthy ones", () => {
	const picks = new Set<string | undefined>();
	const eps = [{ id: "hung", isAvailable: true }, { id: "open", isAvailable: false }, { id: "x", isAvailable: true }, { id: "y", isAvailable: true }];
	for (let i = 0; i < 200; i++) picks.add(otherReplica(brokerWith(eps), "warehouse.reserve", "hung"));
	expect([...picks].sort()).toEqual(["x", "y"]);
});

test("no other available node, or an action nobody has: the strategy picks (the hung node may be the only one)", () => {
	expect(otherReplica(brokerWith([{ id: "hung", isAvailable: true }, { id: "open", isAvailable: false }]), "warehouse.reserve", "hung")).toBeUndefined();
	expect(otherReplica(brokerWith(undefined), "warehouse.reserve", "hung")).toBeUndefined();
});

describe("a suspect node: avoided for 10 s after a saga call to it timed out, then probed by one call", () => {
	const { learn, routeFor } = require("../../../mixins/saga.mixin") as typeof import("../../../mixins/saga.mixin");
	const broker = brokerWith([{ id: "hung", isAvailable: true }, { id: "ok", isAvailable: true }]);
	const timeout = Object.assign(new Error("timed out"), { type: "REQUEST_TIMEOUT", data: { nodeID: "hung" } });
	beforeEach(() => jest.useFakeTimers({ now: 1_000_000 }));
	afterEach(() => jest.useRealTimers());

	test("no suspect: the strategy picks", () => {
		expect(routeFor(broker, new Map(), "payments.authorize")).toEqual({ probe: false });
	});

	test("after a timeout every call avoids the node for 10 s; then exactly one probe goes to it while the others still avoid it", () => {
		const suspects = new Map();
		learn(suspects, "payments.authorize", { probe: false }, timeout);
		expect(routeFor(broker, suspects, "payments.authorize")).toEqual({ nodeID: "ok", probe: false });
		// Another action is not affected.
		expect(routeFor(broker, suspects, "payments.capture")).toEqual({ probe: false });
		jest.setSystemTime(1_000_000 + 9_999);
		expect(routeFor(broker, suspects, "payments.authorize")).toEqual({ nodeID: "ok", probe: false });
		jest.setSystemTime(1_000_000 + 10_000);
		expect(routeFor(broker, suspects, "payments.authorize")).toEqual({ nodeID: "hung", probe: true });
		for (let i = 0; i < 5; i++) expect(routeFor(broker, suspects, "payments.authorize")).toEqual({ nodeID: "ok", probe: false });
	});

	test("the probe timing out renews the suspicion; its answer clears it", () => {
		const suspects = new Map();
		learn(suspects, "warehouse.reserve", { probe: false }, timeout);
		jest.setSystemTime(1_000_000 + 10_000);
		const probe = routeFor(broker, suspects, "warehouse.reserve");
		learn(suspects, "warehouse.reserve", probe, timeout);
		jest.setSystemTime(1_000_000 + 19_999);
		expect(routeFor(broker, suspects, "warehouse.reserve")).toEqual({ nodeID: "ok", probe: false });
		jest.setSystemTime(1_000_000 + 20_000);
		const second = routeFor(broker, suspects, "warehouse.reserve");
		expect(second).toEqual({ nodeID: "hung", probe: true });
		learn(suspects, "warehouse.reserve", second, undefined);
		expect(routeFor(broker, suspects, "warehouse.reserve")).toEqual({ probe: false });
	});

	test("an answer to a call that was not the probe leaves the suspicion as it is", () => {
		const suspects = new Map();
		learn(suspects, "warehouse.reserve", { probe: false }, timeout);
		learn(suspects, "warehouse.reserve", { nodeID: "ok", probe: false }, undefined);
		expect(routeFor(broker, suspects, "warehouse.reserve")).toEqual({ nodeID: "ok", probe: false });
	});
});
