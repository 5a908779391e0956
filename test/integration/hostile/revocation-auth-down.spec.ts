/**
 * Adversary (issue 10 revocation list): a gateway and `auth` on two brokers over NATS. With auth
 * stopped, a logged-out session must stay refused and a live one gets a clear 503 past the bound
 * (docs/OPERATIONS.md "Caching and revocation"), never a 500 nor a revoked session let in.
 */
import type { ServiceBroker } from "moleculer";
import { useTestEnv } from "../../support/env";
import { gatewayClient } from "../catalog/support";

jest.setTimeout(60_000);

describe("revocation with auth down", () => {
	let gw: ServiceBroker;
	let auth: ServiceBroker;
	beforeAll(async () => {
		useTestEnv({ TRANSPORTER: process.env.NATS_URL ?? "nats://127.0.0.1:4222", RATE_LIMIT_MAX: "100000", AUTH_RATE_LIMIT_MAX: "1000" });
		const { createBroker } = require("../../../lib/broker") as typeof import("../../../lib/broker");
		const ns = `revdown-${Math.random().toString(36).slice(2)}`;
		auth = createBroker(["auth", "users", "customers"], { logger: false, namespace: ns, nodeID: "auth-node", transporter: process.env.NATS_URL ?? "nats://127.0.0.1:4222" } as any);
		gw = createBroker(["api"], { logger: false, namespace: ns, nodeID: "gw-node", transporter: process.env.NATS_URL ?? "nats://127.0.0.1:4222" } as any);
		// A customer action that lives with the gateway, so it still answers with auth gone.
		gw.createService({ name: "cart", actions: { get: { auth: "customer", handler: () => ({ items: [] }) } } as any });
		await Promise.all([auth.start(), gw.start()]);
		await gw.waitForServices(["auth", "customers"], 15_000);
	});
	afterAll(() => Promise.all([gw?.stop(), auth?.stop()]));

	it("keeps a logged-out session refused and answers 503 (not 500, not 200) for a live one once auth is gone", async () => {
		const http = gatewayClient(gw);
		const reg = async (n: string) => (await http("POST", "/auth/register", { body: { email: `${n}${Date.now()}@x.io`, password: "Passw0rd!long", firstName: "A", lastName: "B" } })).body;
		const out = await reg("out");
		const live = await reg("live");
		expect((await http("GET", "/customers/me", { token: out.accessToken })).status).toBe(200);
		expect((await http("POST", "/auth/logout", { token: out.accessToken })).status).toBe(204);
		await new Promise(r => setTimeout(r, 300));
		expect((await http("GET", "/customers/me", { token: out.accessToken })).status).toBe(401);
		await auth.stop();
		await new Promise(r => setTimeout(r, 3500));
		const a = await http("GET", "/cart", { token: out.accessToken });
		expect(a.status).toBe(401);
		const b = await http("GET", "/cart", { token: live.accessToken });
		expect([503]).toContain(b.status);
	});
});
