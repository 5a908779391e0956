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
