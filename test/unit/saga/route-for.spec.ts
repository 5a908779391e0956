/**
 * ADVERSARY (kept; passes since suspects are kept per action and node). Found against: routeFor / learn (mixins/saga.mixin.ts, f8bc058). One suspect per action; `learn`
 * on the probe's answer deletes the action's suspect whatever node it names by then.
 */
import type { ServiceBroker } from "moleculer";
import { learn, routeFor } from "../../../mixins/saga.mixin";

const brokerWith = (endpoints: { id: string; isAvailable: boolean }[]) => ({ registry: { getActionEndpoints: () => ({ endpoints }) } }) as unknown as ServiceBroker;
const timeoutOn = (nodeID: string) => Object.assign(new Error("timed out"), { type: "REQUEST_TIMEOUT", data: { nodeID } });

beforeEach(() => jest.useFakeTimers({ now: 1_000_000 }));
afterEach(() => jest.useRealTimers());

test("the probe of node A answering does not clear a suspicion of node B that arose while the probe ran", () => {
	const broker = brokerWith([{ id: "a", isAvailable: true }, { id: "b", isAvailable: true }]);
	const suspects = new Map();
	learn(suspects, "warehouse.reserve", { probe: false }, timeoutOn("a"));
	jest.setSystemTime(1_000_000 + 10_000);
	const probe = routeFor(broker, suspects, "warehouse.reserve");
	expect(probe).toEqual({ nodeID: "a", probe: true });
	// While the probe runs, a call routed to b (the other replica) times out: b is now suspected.
	const other = routeFor(broker, suspects, "warehouse.reserve");
	expect(other).toEqual({ nodeID: "b", probe: false });
	learn(suspects, "warehouse.reserve", other, timeoutOn("b"));
	// a recovered: the probe answers.
	learn(suspects, "warehouse.reserve", probe, undefined);
	// b timed out a moment ago and must still be avoided.
	expect(routeFor(broker, suspects, "warehouse.reserve")).toEqual({ nodeID: "a", probe: false });
});

test("with three replicas and two hung, a timeout on the second hung node stops the avoidance of the first", () => {
	const broker = brokerWith([{ id: "h1", isAvailable: true }, { id: "h2", isAvailable: true }, { id: "ok", isAvailable: true }]);
	const suspects = new Map();
	learn(suspects, "payments.authorize", { probe: false }, timeoutOn("h1"));
	learn(suspects, "payments.authorize", { nodeID: "h2", probe: false }, timeoutOn("h2"));
	const picks = new Set<string | undefined>();
	for (let i = 0; i < 200; i++) picks.add(routeFor(broker, suspects, "payments.authorize").nodeID);
	expect([...picks].sort()).toEqual(["ok"]);
});

test("two replicas, one hung: a single timeout on the healthy one sends EVERY call to the hung one (until it times out there)", () => {
	const broker = brokerWith([{ id: "hung", isAvailable: true }, { id: "ok", isAvailable: true }]);
	const suspects = new Map();
	learn(suspects, "warehouse.reserve", { probe: false }, timeoutOn("hung"));
	expect(routeFor(broker, suspects, "warehouse.reserve")).toEqual({ nodeID: "ok", probe: false });
	// The healthy replica, now taking every call, answers one of them late (load, a lock, a GC pause).
	learn(suspects, "warehouse.reserve", { nodeID: "ok", probe: false }, timeoutOn("ok"));
	const picks = new Set<string | undefined>();
	for (let i = 0; i < 50; i++) picks.add(routeFor(broker, suspects, "warehouse.reserve").nodeID);
	// Without the routing the strategy would split them; with it, all 50 are pinned to the hung node.
	expect([...picks]).not.toEqual(["hung"]);
});
