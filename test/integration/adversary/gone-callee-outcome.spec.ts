/**
 * Adversary finding, kept as the rule it led to: once a node that had an action leaves (stopped
 * gracefully, as in a rolling restart, or dropped after its heartbeat timed out), Moleculer keeps
 * the action's now empty endpoint list, so a call throws ServiceNotAvailableError, not
 * ServiceNotFoundError. The saga takes that as `unavailable` (lib/saga/decide.ts) and waits it out
 * (about 9 s: a rolling restart's new process comes back within that; the e2e
 * test/e2e/commerce/restart-during-checkout.spec.ts), so a callee gone for good costs a checkout
 * those seconds before it is REJECTED (the client gets 202 first; docs/LIMITS.md). An action that no
 * node ever announced still fails fast as `not-sent`.
 */
import type { ServiceBroker } from "moleculer";
import { useTestEnv } from "../../support/env";

useTestEnv({ TRANSPORTER: "nats://127.0.0.1:4222", NAMESPACE: `adv-gco-${Math.random().toString(36).slice(2, 8)}` });

const { ServiceBroker: Broker } = require("moleculer") as typeof import("moleculer");
const { brokerOptions } = require("../../../moleculer.config") as typeof import("../../../moleculer.config");
const { outcomeOf } = require("../../../lib/saga/decide") as typeof import("../../../lib/saga/decide");

jest.setTimeout(30_000);

let caller: ServiceBroker;
let callee: ServiceBroker;

afterAll(async () => {
	await caller?.stop();
});

async function failureOf(action: string): Promise<unknown> {
	try {
		await caller.call(action, {}, { retries: 0 });
	} catch (err) {
		return err;
	}
	throw new Error(`${action} answered`);
}

test("a callee node that left the cluster is `unavailable` (waited out); an action no node ever had is `not-sent` (fail fast)", async () => {
	caller = new Broker({ ...brokerOptions({ logger: false }), nodeID: "adv-gco-caller" });
	callee = new Broker({ ...brokerOptions({ logger: false }), nodeID: "adv-gco-payments" });
	callee.createService({ name: "payx", actions: { authorize: () => ({ ok: true }) } });
	await Promise.all([caller.start(), callee.start()]);
	await caller.waitForServices(["payx"], 10_000);
	expect(await caller.call("payx.authorize")).toEqual({ ok: true });
	expect(outcomeOf(await failureOf("never.announced"))).toBe("not-sent");
	await callee.stop();
	await new Promise(r => setTimeout(r, 500));
	expect(outcomeOf(await failureOf("payx.authorize"))).toBe("unavailable");
});
