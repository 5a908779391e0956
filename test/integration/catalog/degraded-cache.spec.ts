/**
 * Adversary (issue 10 read cache): a product page that degraded to a null rating or availability
 * because reviews or warehouse was slow or failing must not be cached: once they answer again, the
 * next read shows them, instead of the degraded page for the cache TTL (30 s).
 */
import type { ServiceBroker } from "moleculer";
import { DEMO_PRODUCTS } from "../../../lib/catalog/demo-data";
import { useTestEnv } from "../../support/env";
import { type Http, type Mode, dependencyStub, gatewayClient } from "./support";

jest.setTimeout(60_000);

describe("a degraded product page is not cached", () => {
	let broker: ServiceBroker;
	let http: Http;
	const demo = DEMO_PRODUCTS[3];
	const reviews = { mode: "ok" as Mode, calls: 0 };
	const warehouse = { mode: "ok" as Mode, calls: 0 };

	beforeAll(async () => {
		useTestEnv({ SEED_DEMO: "true", RATE_LIMIT_MAX: "100000" });
		const { createBroker } = require("../../../lib/broker") as typeof import("../../../lib/broker");
		broker = createBroker(["api", "auth", "users", "customers", "catalog"], { logger: false, namespace: `degr-${Math.random().toString(36).slice(2)}` });
		await broker.start();
		http = gatewayClient(broker);
		broker.createService(dependencyStub("reviews", "summary", { average: 4.5, count: 12 }, reviews));
		broker.createService(dependencyStub("warehouse", "availability", { inStock: true, quantity: 7 }, warehouse));
		await broker.waitForServices(["reviews", "warehouse"], 10_000);
	});
	afterAll(() => broker?.stop());

	it("shows availability again as soon as the warehouse answers after a timeout", async () => {
		expect(broker.cacher).toBeTruthy();
		warehouse.mode = "slow";
		const degraded = await http("GET", `/products/${demo.id}`);
		expect(degraded.status).toBe(200);
		expect(degraded.body.availability).toBeNull();
		warehouse.mode = "ok";
		await new Promise(r => setTimeout(r, 1600)); // the slow call ends meanwhile
		const again = await http("GET", `/products/${demo.id}`);
		expect(again.body.availability).toEqual({ inStock: true, quantity: 7 });
		expect(again.body.rating).toEqual({ average: 4.5, count: 12 });
		// A complete page is cached as before.
		const calls = warehouse.calls;
		await http("GET", `/products/${demo.id}`);
		expect(warehouse.calls).toBe(calls);
	});

	it("shows the rating again as soon as reviews stops failing", async () => {
		const other = DEMO_PRODUCTS[4];
		reviews.mode = "fail";
		const degraded = await http("GET", `/products/${other.id}`);
		expect(degraded.body.rating).toBeNull();
		reviews.mode = "ok";
		const again = await http("GET", `/products/${other.id}`);
		expect(again.body.rating).toEqual({ average: 4.5, count: 12 });
	});
});
