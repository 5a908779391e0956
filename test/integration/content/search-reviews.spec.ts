/**
 * Search and reviews through the gateway, fed only by events (embedded bus, SQLite): typos,
 * prefixes, facets and filters on the demo catalog; catalog changes reach search within 2 s;
 * review eligibility follows deliveries, moderation holds, ratings follow published reviews.
 */
import type { ServiceBroker } from "moleculer";
import { TEST_ADMIN, useTestEnv } from "../../support/env";

jest.setTimeout(90_000);

let broker: ServiceBroker;
let base: string;

async function http(method: string, path: string, opts: { body?: unknown; token?: string } = {}) {
	const res = await fetch(base + path, {
		method,
		headers: { ...(opts.body ? { "content-type": "application/json" } : {}), ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}) },
		body: opts.body ? JSON.stringify(opts.body) : undefined,
	});
	const text = await res.text();
	return { status: res.status, body: text ? JSON.parse(text) : null };
}

async function eventually<T>(fn: () => Promise<T>, ok: (v: T) => boolean, ms = 2000): Promise<T> {
	const deadline = Date.now() + ms;
	for (;;) {
		const v = await fn();
		if (ok(v)) return v;
		if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${JSON.stringify(v).slice(0, 300)}`);
		await new Promise(r => setTimeout(r, 50));
	}
}

beforeAll(async () => {
	useTestEnv({ SEED_DEMO: "true", AUTH_RATE_LIMIT_MAX: "1000" });
	const { createBroker } = require("../../../lib/broker") as typeof import("../../../lib/broker");
	const { DbMixin } = require("../../../mixins/db.mixin") as typeof import("../../../mixins/db.mixin");
	const { OutboxMixin, outboxMigrations } = require("../../../mixins/outbox.mixin") as typeof import("../../../mixins/outbox.mixin");
	broker = createBroker(["api", "auth", "customers", "users", "catalog", "search", "reviews"], { logger: false, namespace: `content-${Math.random()}` });
	// Stands in for the orders service: records a delivery the way orders does.
	broker.createService({
		name: "ordersstub",
		mixins: [DbMixin({ name: "ordersstub", migrations: outboxMigrations, models: () => ({}) }), OutboxMixin],
		actions: {
			deliver: {
				params: { customerId: "string", productId: "string" },
				handler(this: any, ctx: any) {
					const { customerId, productId } = ctx.params;
					return this.transaction((t: any) =>
						this.recordEvent(t, "orders.order.delivered", { orderId: `o-${Math.random()}`, customerId, status: "DELIVERED", items: [{ productId, sku: "X", quantity: 1 }], total: { amount: 1, currency: "USD" }, failureReason: null }),
					);
				},
			},
		},
	} as any);
	await broker.start();
	base = `http://127.0.0.1:${(broker.getLocalService("api") as any).server.address().port}`;
	// The read model fills from the catalog's events: wait for the whole demo catalog.
	await eventually(() => http("GET", "/api/v1/search?pageSize=1"), r => r.body?.total === 130, 30_000);
});

afterAll(() => broker?.stop());

describe("search", () => {
	it("finds headphones despite a typo, completes prefixes and counts facets", async () => {
		const typo = await http("GET", "/api/v1/search?q=hedphones&pageSize=100");
		expect(typo.status).toBe(200);
		expect(typo.body.total).toBeGreaterThanOrEqual(10);
		// Matched on the product name or on its category's name ("Sport Earbuds" are in Headphones).
		const headphones = (await http("GET", "/api/v1/categories")).body.items.find((c: any) => c.slug === "headphones").id;
		expect(typo.body.items.every((p: any) => /headphones/i.test(p.name) || p.categoryId === headphones)).toBe(true);
		expect(typo.body.items.filter((p: any) => /headphones/i.test(p.name)).length).toBeGreaterThanOrEqual(10);
		expect(typo.body.facets.category).toEqual([{ value: "headphones", count: typo.body.total }]);
		const brands = typo.body.facets.brand.reduce((n: number, b: any) => n + b.count, 0);
		expect(brands).toBe(typo.body.total);

		const suggest = await http("GET", "/api/v1/search/suggest?q=headp");
		expect(suggest.body.items.length).toBeGreaterThan(0);
		expect(suggest.body.items.length).toBeLessThanOrEqual(10);
		expect(suggest.body.items.every((s: any) => /headp/i.test(s.name) && s.id)).toBe(true);

		const filtered = await http("GET", "/api/v1/search?category=laptops&minPrice=50000&sort=price&pageSize=100");
		const prices = filtered.body.items.map((p: any) => p.price.amount);
		expect(prices.every((x: number) => x >= 50000)).toBe(true);
		expect(prices).toEqual([...prices].sort((a: number, b: number) => a - b));
		expect((await http("GET", "/api/v1/search?pageSize=1000")).body.pageSize).toBe(100);
	});

	it("refuses bad parameters with 422", async () => {
		for (const q of ["minPrice=x", "sort=bogus", "colour=red", `q=${"a".repeat(300)}`]) {
			const r = await http("GET", `/api/v1/search?${q}`);
			expect(r.status).toBe(422);
			expect(r.body).toMatchObject({ code: 422, type: "VALIDATION_ERROR" });
		}
	});

	it("follows products created, updated and archived through the gateway within 2 s", async () => {
		const admin = (await http("POST", "/api/v1/auth/login", { body: TEST_ADMIN })).body.accessToken;
		const categories = (await http("GET", "/api/v1/categories")).body.items;
		const created = await http("POST", "/api/v1/products", { token: admin, body: { sku: "ZEPHYR-1", name: "Zephyr Quantum Kettle", brand: "Zephyr", categoryId: categories[0].id, price: { amount: 4599, currency: "USD" }, weightGrams: 900 } });
		expect(created.status).toBe(201);
		await eventually(() => http("GET", "/api/v1/search?q=zephyr"), r => r.body.items[0]?.id === created.body.id);
		await http("PATCH", `/api/v1/products/${created.body.id}`, { token: admin, body: { name: "Zephyr Nebula Kettle" } });
		await eventually(() => http("GET", "/api/v1/search?q=nebula"), r => r.body.items[0]?.id === created.body.id);
		expect((await http("DELETE", `/api/v1/products/${created.body.id}`, { token: admin })).status).toBe(204);
		await eventually(() => http("GET", "/api/v1/search?q=zephyr"), r => r.body.total === 0);
	});
});

describe("reviews", () => {
	let customer: { accessToken: string; customer: { id: string } };
	let productId: string;

	beforeAll(async () => {
		customer = (await http("POST", "/api/v1/auth/register", { body: { email: "reviewer@example.com", password: "a-good-password-1", firstName: "Rita", lastName: "Reviewer" } })).body;
		productId = (await http("GET", "/api/v1/products?pageSize=1")).body.items[0].id;
	});

	it("lets only buyers of a delivered order review, once, and moves the rating", async () => {
		const review = { rating: 4, title: "Solid", body: "Does what it says, well made." };
		const before = await http("POST", `/api/v1/products/${productId}/reviews`, { token: customer.accessToken, body: review });
		expect(before.status).toBe(403);
		expect(before.body.type).toBe("NOT_A_BUYER");

		await broker.call("ordersstub.deliver", { customerId: customer.customer.id, productId });
		const posted = await eventually(() => http("POST", `/api/v1/products/${productId}/reviews`, { token: customer.accessToken, body: review }), r => r.status !== 403);
		expect(posted).toEqual({ status: 201, body: { id: expect.any(String), status: "PUBLISHED" } });
		expect((await http("POST", `/api/v1/products/${productId}/reviews`, { token: customer.accessToken, body: review })).body.type).toBe("ALREADY_REVIEWED");

		const list = await http("GET", `/api/v1/products/${productId}/reviews`);
		expect(list.body.items).toEqual([{ id: posted.body.id, rating: 4, title: "Solid", body: review.body, authorName: "Rita R.", verifiedPurchase: true, createdAt: expect.any(String) }]);
		await eventually(() => http("GET", `/api/v1/products/${productId}`), r => r.body.rating?.count === 1);
		expect((await http("GET", `/api/v1/products/${productId}`)).body.rating).toEqual({ average: 4, count: 1 });
	});

	it("holds a flagged review until support approves it", async () => {
		const other = (await http("POST", "/api/v1/auth/register", { body: { email: "shouty@example.com", password: "a-good-password-1", firstName: "Sam", lastName: "Shouty" } })).body;
		await broker.call("ordersstub.deliver", { customerId: other.customer.id, productId });
		const held = await eventually(() => http("POST", `/api/v1/products/${productId}/reviews`, { token: other.accessToken, body: { rating: 1, title: "Bad", body: "Use promo code SAVE50 at www.cheap.example" } }), r => r.status !== 403);
		expect(held.body.status).toBe("PENDING");
		expect((await http("GET", `/api/v1/products/${productId}/reviews`)).body.total).toBe(1);

		const admin = (await http("POST", "/api/v1/auth/login", { body: TEST_ADMIN })).body.accessToken;
		// Support finds it in the moderation queue (API.md GET /admin/reviews?status=PENDING).
		expect((await http("GET", "/api/v1/admin/reviews?status=PENDING", { token: other.accessToken })).status).toBe(403);
		const queue = await http("GET", "/api/v1/admin/reviews?status=PENDING", { token: admin });
		expect(queue.status).toBe(200);
		expect(queue.body).toEqual({
			items: [expect.objectContaining({ id: held.body.id, status: "PENDING", productId, rating: 1, title: "Bad", moderationReasons: expect.arrayContaining([expect.any(String)]) })],
			total: 1,
			page: 1,
			pageSize: 20,
		});
		expect((await http("GET", "/api/v1/admin/reviews?status=HIDDEN", { token: admin })).status).toBe(422);
		expect((await http("POST", `/api/v1/admin/reviews/${held.body.id}/approve`, { token: other.accessToken })).status).toBe(403);
		expect((await http("POST", `/api/v1/admin/reviews/${held.body.id}/approve`, { token: admin })).status).toBe(200);
		expect((await http("POST", `/api/v1/admin/reviews/${held.body.id}/reject`, { token: admin })).body.type).toBe("NOT_PENDING");
		expect((await http("GET", "/api/v1/admin/reviews", { token: admin })).body.total).toBe(0);
		expect((await http("GET", "/api/v1/admin/reviews?status=PUBLISHED", { token: admin })).body.items.map((r: any) => r.id)).toContain(held.body.id);
		expect((await http("GET", `/api/v1/products/${productId}/reviews`)).body.total).toBe(2);
		await eventually(() => http("GET", `/api/v1/products/${productId}`), r => r.body.rating?.count === 2);
	});

	it("still serves the product page, with rating null, while the reviews service is down", async () => {
		await broker.destroyService(broker.getLocalService("reviews")!);
		// A page cached before keeps its rating until an event or its TTL (lib/cache.ts); one computed now has none.
		await (broker.cacher as any)?.clean();
		const page = await http("GET", `/api/v1/products/${productId}`);
		expect(page.status).toBe(200);
		expect(page.body).toMatchObject({ id: productId, rating: null, availability: null });
	});
});
