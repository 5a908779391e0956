/**
 * The catalog through the real gateway with the real identity services (api, auth, users,
 * customers, catalog in one broker), on SQLite and on PostgreSQL: the demo catalog loaded on
 * first start, listing filters, sorts, pages and clamps, product pages that degrade to null
 * ratings and availability, admin edits with their role matrix and outbox events, SKU_TAKEN
 * under concurrency, and bad input refused with nothing written.
 */
import type { Service, ServiceBroker } from "moleculer";
import { DEMO_CATEGORIES, DEMO_PRODUCTS } from "../../../lib/catalog/demo-data";
import { useTestEnv } from "../../support/env";
import { PG_URL, dropDatabases, pgPrefix, waitFor } from "../events/helpers";
import { type Http, type Mode, callers, dependencyStub, gatewayClient, outbox, productCount } from "./support";

jest.setTimeout(120_000);

const PRODUCT_KEYS = ["id", "sku", "name", "description", "price", "categoryId", "brand", "attributes", "images", "weightGrams", "status", "createdAt", "updatedAt"].sort();
const PAGE_KEYS = [...PRODUCT_KEYS, "rating", "availability"].sort();
const catId = (slug: string) => DEMO_CATEGORIES.find(c => c.slug === slug)!.id;
const demoIn = (...slugs: string[]) => DEMO_PRODUCTS.filter(p => slugs.includes(p.categorySlug));

describe.each([
	["SQLite", {}],
	["PostgreSQL", { DATABASE_URL: PG_URL, DB_NAME_PREFIX: pgPrefix("cat") }],
])("catalog on %s", (_db, env: Record<string, string>) => {
	let broker: ServiceBroker;
	let http: Http;
	let tokens: Awaited<ReturnType<typeof callers>>;
	const newProduct = (sku: string, extra: Record<string, unknown> = {}) => ({
		sku,
		name: `Zephyr Test Kettle ${sku}`,
		brand: "Zephyr",
		categoryId: catId("home-kitchen"),
		price: { amount: 4599, currency: "USD" },
		weightGrams: 900,
		...extra,
	});

	beforeAll(async () => {
		useTestEnv({ ...env, SEED_DEMO: "true", AUTH_RATE_LIMIT_MAX: "1000", RATE_LIMIT_MAX: "100000" });
		const { createBroker } = require("../../../lib/broker") as typeof import("../../../lib/broker");
		broker = createBroker(["api", "auth", "users", "customers", "catalog"], { logger: false, namespace: `catalog-${Math.random().toString(36).slice(2)}` });
		await broker.start();
		http = gatewayClient(broker);
		tokens = await callers(http);
	});

	afterAll(async () => {
		await broker?.stop();
		if (env.DATABASE_URL) await dropDatabases(env.DB_NAME_PREFIX);
	});

	describe("demo catalog", () => {
		it("is loaded on the first start, and seedDemo then adds nothing, even twice at once", async () => {
			expect((await http("GET", "/products?pageSize=1")).body.total).toBe(DEMO_PRODUCTS.length);
			const again = await Promise.all([broker.call("catalog.seedDemo"), broker.call("catalog.seedDemo")]);
			expect(again).toEqual([
				{ categories: 0, products: 0 },
				{ categories: 0, products: 0 },
			]);
			expect(await productCount(broker)).toBe(DEMO_PRODUCTS.length);
			expect((await outbox(broker)).filter(e => e.name === "catalog.product.created")).toHaveLength(DEMO_PRODUCTS.length);
		});

		it("lists the categories with their parents", async () => {
			const r = await http("GET", "/categories");
			expect(r.status).toBe(200);
			const expected = DEMO_CATEGORIES.map(c => ({ id: c.id, slug: c.slug, name: c.name, parentId: c.parentSlug ? catId(c.parentSlug) : null }));
			expect(r.body).toEqual({ items: expect.arrayContaining(expected) });
			expect(r.body.items).toHaveLength(expected.length);
			expect(r.body.items.map((c: any) => c.name)).toEqual(expected.map(c => c.name).sort());
		});
	});

	describe("listing", () => {
		async function all(query: string): Promise<any[]> {
			const items: any[] = [];
			for (let page = 1; ; page++) {
				const r = await http("GET", `/products?${query}&pageSize=100&page=${page}`);
				expect(r.status).toBe(200);
				items.push(...r.body.items);
				if (items.length >= r.body.total || !r.body.items.length) return items;
			}
		}

		it("answers the first page of 20 by name, whitelisted, money in cents", async () => {
			const r = await http("GET", "/products");
			expect(r.status).toBe(200);
			expect(r.body).toEqual({ items: expect.any(Array), total: DEMO_PRODUCTS.length, page: 1, pageSize: 20 });
			const names = DEMO_PRODUCTS.map(p => p.name).sort();
			expect(r.body.items.map((p: any) => p.name)).toEqual(names.slice(0, 20));
			const demo = DEMO_PRODUCTS.find(p => p.id === r.body.items[0].id)!;
			expect(r.body.items[0]).toEqual({
				id: demo.id,
				sku: demo.sku,
				name: demo.name,
				description: demo.description,
				price: demo.price,
				categoryId: catId(demo.categorySlug),
				brand: demo.brand,
				attributes: demo.attributes,
				images: demo.images,
				weightGrams: demo.weightGrams,
				status: "active",
				createdAt: expect.stringMatching(/^2026-01-/),
				updatedAt: expect.stringMatching(/^2026-01-/),
			});
			for (const p of r.body.items) expect(Object.keys(p).sort()).toEqual(PRODUCT_KEYS);
		});

		it("filters by category id or slug, sub-categories included", async () => {
			const audio = demoIn("audio", "headphones", "speakers");
			const bySlug = await all("category=audio");
			expect(bySlug.map(p => p.id).sort()).toEqual(audio.map(p => p.id).sort());
			expect((await all(`category=${catId("audio")}`)).map(p => p.id).sort()).toEqual(audio.map(p => p.id).sort());
			expect((await all("category=headphones")).map(p => p.id).sort()).toEqual(demoIn("headphones").map(p => p.id).sort());
			expect((await http("GET", "/products?category=no-such-category")).body).toEqual({ items: [], total: 0, page: 1, pageSize: 20 });
		});

		it("filters by brand and by an inclusive price range, combined with a category", async () => {
			const brand = DEMO_PRODUCTS[0].brand;
			expect((await all(`brand=${brand}`)).map(p => p.id).sort()).toEqual(DEMO_PRODUCTS.filter(p => p.brand === brand).map(p => p.id).sort());
			const sorted = DEMO_PRODUCTS.map(p => p.price.amount).sort((a, b) => a - b);
			const [lo, hi] = [sorted[20], sorted[80]];
			const inRange = DEMO_PRODUCTS.filter(p => p.price.amount >= lo && p.price.amount <= hi);
			expect((await all(`minPrice=${lo}&maxPrice=${hi}`)).map(p => p.id).sort()).toEqual(inRange.map(p => p.id).sort());
			expect((await http("GET", `/products?minPrice=${lo}&maxPrice=${lo}`)).body.total).toBe(DEMO_PRODUCTS.filter(p => p.price.amount === lo).length);
			const laptops = (await all("category=computers&minPrice=100000")).map(p => p.id).sort();
			expect(laptops).toEqual(demoIn("computers", "laptops", "computer-accessories").filter(p => p.price.amount >= 100000).map(p => p.id).sort());
			expect(laptops.length).toBeGreaterThan(0);
		});

		it("sorts by price, name and newest, each in a stable total order", async () => {
			const byPrice = await all("sort=price");
			expect(byPrice).toHaveLength(DEMO_PRODUCTS.length);
			const prices = byPrice.map(p => p.price.amount);
			expect(prices).toEqual([...prices].sort((a, b) => a - b));
			const desc = (await all("sort=-price")).map(p => p.price.amount);
			expect(desc).toEqual([...prices].reverse());
			expect((await all("sort=name")).map(p => p.name)).toEqual(DEMO_PRODUCTS.map(p => p.name).sort());
			// The demo catalog's creation times follow its order.
			expect((await all("sort=-createdAt")).map(p => p.sku)).toEqual(DEMO_PRODUCTS.map(p => p.sku).reverse());
			expect(new Set(byPrice.map(p => p.id)).size).toBe(DEMO_PRODUCTS.length);
		});

		it("pages without overlap and answers an empty page past the end", async () => {
			const pages = await Promise.all([1, 2, 3].map(page => http("GET", `/products?sort=price&pageSize=50&page=${page}`)));
			expect(pages.map(p => [p.body.page, p.body.pageSize, p.body.items.length, p.body.total])).toEqual([
				[1, 50, 50, DEMO_PRODUCTS.length],
				[2, 50, 50, DEMO_PRODUCTS.length],
				[3, 50, DEMO_PRODUCTS.length - 100, DEMO_PRODUCTS.length],
			]);
			const ids = pages.flatMap(p => p.body.items.map((i: any) => i.id));
			expect(new Set(ids).size).toBe(DEMO_PRODUCTS.length);
			expect((await http("GET", "/products?page=99")).body).toEqual({ items: [], total: DEMO_PRODUCTS.length, page: 99, pageSize: 20 });
		});

		it("clamps pageSize to 1..100 and page to at least 1 instead of refusing", async () => {
			const cases: [string, number, number, number][] = [
				["pageSize=0", 1, 1, 1],
				["pageSize=-5", 1, 1, 1],
				["pageSize=1000", 1, 100, 100],
				["pageSize=101", 1, 100, 100],
				["page=0&pageSize=3", 1, 3, 3],
				["page=-4&pageSize=3", 1, 3, 3],
			];
			for (const [query, page, pageSize, count] of cases) {
				const r = await http("GET", `/products?${query}`);
				expect([query, r.status, r.body.page, r.body.pageSize, r.body.items.length]).toEqual([query, 200, page, pageSize, count]);
			}
		});

		it("refuses non-numbers, unknown sorts and fields, and inverted price ranges with 422", async () => {
			for (const query of ["minPrice=abc", "maxPrice=1.5", "minPrice=-1", "pageSize=abc", "page=1.5", "sort=bogus", "sort=-rating", "colour=red", "minPrice=500&maxPrice=100"]) {
				const r = await http("GET", `/products?${query}`);
				expect([query, r.status, r.body.code, r.body.type]).toEqual([query, 422, 422, "VALIDATION_ERROR"]);
				expect(r.body.data.length).toBeGreaterThan(0);
			}
		});
	});

	describe("product page", () => {
		const demo = DEMO_PRODUCTS[3];
		const reviews = { mode: "ok" as Mode, calls: 0 };
		const warehouse = { mode: "ok" as Mode, calls: 0 };
		const stubs: Service[] = [];

		afterAll(async () => {
			for (const s of stubs) await broker.destroyService(s);
		});

		/** The page as computed now: these tests are about its enrichment, not the read cache (lib/cache.ts). */
		const uncached = async (path: string) => {
			await (broker.cacher as any)?.clean();
			return http("GET", path);
		};

		it("serves a product with null rating and availability, without waiting, when reviews and warehouse do not exist", async () => {
			const answers = [];
			for (let i = 0; i < 5; i++) answers.push(await uncached(`/products/${demo.id}`));
			const r = answers[0];
			expect(r.status).toBe(200);
			expect(Object.keys(r.body).sort()).toEqual(PAGE_KEYS);
			expect(r.body).toMatchObject({ id: demo.id, sku: demo.sku, name: demo.name, price: demo.price, categoryId: catId(demo.categorySlug), status: "active", rating: null, availability: null });
			// The enrichment timeout is 400 ms: an absent service must not cost it.
			expect(Math.min(...answers.map(a => a.ms))).toBeLessThan(250);
		});

		it("adds the rating and availability the services give, and nothing else of theirs", async () => {
			stubs.push(broker.createService(dependencyStub("reviews", "summary", { average: 4.5, count: 12 }, reviews)));
			stubs.push(broker.createService(dependencyStub("warehouse", "availability", { inStock: true, quantity: 7 }, warehouse)));
			await broker.waitForServices(["reviews", "warehouse"], 10_000);
			const r = await uncached(`/products/${demo.id}`);
			expect(r.body).toMatchObject({ rating: { average: 4.5, count: 12 }, availability: { inStock: true, quantity: 7 } });
			expect(Object.keys(r.body.rating).sort()).toEqual(["average", "count"]);
			expect(Object.keys(r.body.availability).sort()).toEqual(["inStock", "quantity"]);
		});

		it("gives up on slow services after about 400 ms, asking both in parallel", async () => {
			reviews.mode = "slow";
			warehouse.mode = "slow";
			const r = await uncached(`/products/${demo.id}`);
			expect(r.status).toBe(200);
			expect(r.body).toMatchObject({ id: demo.id, rating: null, availability: null });
			expect(r.ms).toBeGreaterThanOrEqual(380);
			expect(r.ms).toBeLessThan(780);
			warehouse.mode = "ok";
			const one = await uncached(`/products/${demo.id}`);
			expect(one.body).toMatchObject({ rating: null, availability: { inStock: true, quantity: 7 } });
		});

		it("answers null for a service that fails, and stops calling it once its breaker opens", async () => {
			reviews.mode = "fail";
			const start = reviews.calls;
			let unchanged = 0;
			let before = reviews.calls;
			for (let i = 0; i < 60 && unchanged < 5; i++) {
				const r = await uncached(`/products/${demo.id}`);
				expect([r.status, r.body.rating, r.body.availability]).toEqual([200, null, { inStock: true, quantity: 7 }]);
				unchanged = reviews.calls === before ? unchanged + 1 : 0;
				before = reviews.calls;
			}
			// The broken service was reached (and answered null for) until, five pages in a row, it was not: the breaker is open.
			expect(reviews.calls).toBeGreaterThan(start);
			expect(unchanged).toBe(5);
		});

		it("hides drafts and unknown ids from the public with 404, shows drafts to admins", async () => {
			const draft = await http("POST", "/products", { token: tokens.catalog, body: newProduct("DRAFT-1", { status: "draft" }) });
			expect(draft.status).toBe(201);
			expect(await http("GET", `/products/${draft.body.id}`)).toMatchObject({ status: 404, body: { code: 404, type: "PRODUCT_NOT_FOUND", name: "NotFoundError" } });
			expect(await http("GET", `/products/${draft.body.id}`, { token: tokens.customer })).toMatchObject({ status: 404 });
			expect(await http("GET", `/products/${draft.body.id}`, { token: tokens.support })).toMatchObject({ status: 200, body: { status: "draft" } });
			expect((await http("GET", "/products?brand=Zephyr")).body.items.map((p: any) => p.sku)).not.toContain("DRAFT-1");
			expect(await http("GET", "/products/00000000-0000-0000-0000-000000000000")).toMatchObject({ status: 404, body: { type: "PRODUCT_NOT_FOUND" } });
		});
	});

	describe("admin edits", () => {
		it("lets only the catalog role (or a superadmin) create: none 401, customer 403, other admin 403", async () => {
			const body = newProduct("ROLE-1");
			expect(await http("POST", "/products", { body })).toMatchObject({ status: 401, body: { code: 401 } });
			expect(await http("POST", "/products", { body, token: tokens.customer })).toMatchObject({ status: 403, body: { code: 403 } });
			expect(await http("POST", "/products", { body, token: tokens.support })).toMatchObject({ status: 403, body: { code: 403, type: "MISSING_ROLE" } });
			expect(await productCount(broker)).toBe(DEMO_PRODUCTS.length + 1); // the draft only
			const created = await http("POST", "/products", { body, token: tokens.catalog });
			expect(created.status).toBe(201);
			expect(created.body).toEqual({
				id: expect.stringMatching(/^[0-9a-f-]{36}$/),
				sku: "ROLE-1",
				name: "Zephyr Test Kettle ROLE-1",
				description: "",
				price: { amount: 4599, currency: "USD" },
				categoryId: catId("home-kitchen"),
				brand: "Zephyr",
				attributes: {},
				images: [],
				weightGrams: 900,
				status: "active",
				createdAt: expect.any(String),
				updatedAt: created.body.createdAt,
			});
			expect((await http("POST", "/products", { body: newProduct("ROLE-2"), token: tokens.superadmin })).status).toBe(201);
			const page = await http("GET", `/products/${created.body.id}`);
			expect(page.body).toEqual({ ...created.body, rating: null, availability: null });
			expect((await http("GET", "/products?category=home-kitchen&pageSize=100")).body.items.map((p: any) => p.sku)).toEqual(expect.arrayContaining(["ROLE-1", "ROLE-2"]));
		});

		it("updates only the fields sent, for the catalog role, and records the change", async () => {
			const created = (await http("POST", "/products", { token: tokens.catalog, body: newProduct("EDIT-1", { attributes: { color: "red" }, images: ["https://img.example.com/e1.jpg"] }) })).body;
			const patch = { name: "Zephyr Nebula Kettle", price: { amount: 3999, currency: "USD" }, categoryId: catId("speakers") };
			expect((await http("PATCH", `/products/${created.id}`, { body: patch })).status).toBe(401);
			expect((await http("PATCH", `/products/${created.id}`, { body: patch, token: tokens.customer })).status).toBe(403);
			expect((await http("PATCH", `/products/${created.id}`, { body: patch, token: tokens.support })).status).toBe(403);
			expect((await http("GET", `/products/${created.id}`)).body.name).toBe(created.name);
			const r = await http("PATCH", `/products/${created.id}`, { body: patch, token: tokens.catalog });
			expect(r.status).toBe(200);
			expect(r.body).toEqual({ ...created, ...patch, updatedAt: expect.any(String) });
			expect(Date.parse(r.body.updatedAt)).toBeGreaterThanOrEqual(Date.parse(created.updatedAt));
			expect((await http("GET", `/products/${created.id}`)).body).toMatchObject(patch);
			const cleared = await http("PATCH", `/products/${created.id}`, { body: { attributes: {}, images: [], description: "Now with a description." }, token: tokens.catalog });
			expect(cleared.body).toMatchObject({ ...patch, attributes: {}, images: [], description: "Now with a description." });

			const events = (await outbox(broker)).filter(e => e.payload.productId === created.id);
			expect(events.map(e => e.name)).toEqual(["catalog.product.created", "catalog.product.updated", "catalog.product.updated"]);
			expect(events[1].payload).toEqual({
				eventId: expect.any(String),
				occurredAt: expect.any(String),
				productId: created.id,
				sku: "EDIT-1",
				name: "Zephyr Nebula Kettle",
				description: "",
				brand: "Zephyr",
				categoryId: catId("speakers"),
				categorySlug: "speakers",
				categoryName: "Speakers",
				price: { amount: 3999, currency: "USD" },
				status: "active",
				attributes: { color: "red" },
				createdAt: created.createdAt,
				updatedAt: r.body.updatedAt,
				weightGrams: 900,
				rating: null,
			});
		});

		it("refuses a bad PATCH with 422 or 404 and changes nothing", async () => {
			const created = (await http("POST", "/products", { token: tokens.catalog, body: newProduct("EDIT-2") })).body;
			const eventsBefore = (await outbox(broker)).length;
			const bad: [number, unknown][] = [
				[422, { sku: "OTHER-1" }],
				[422, { categoryId: "no-such-category" }],
				[422, { categoryId: "" }],
				[422, { status: "archived" }],
				[422, { price: { amount: -1, currency: "USD" } }],
				[422, { weightGrams: "heavy" }],
				[422, { rating: 5 }],
				[422, { name: "" }],
			];
			for (const [status, body] of bad) {
				const r = await http("PATCH", `/products/${created.id}`, { body, token: tokens.catalog });
				expect([JSON.stringify(body), r.status, r.body.type]).toEqual([JSON.stringify(body), status, "VALIDATION_ERROR"]);
			}
			expect(await http("PATCH", "/products/00000000-0000-0000-0000-000000000000", { body: { name: "X" }, token: tokens.catalog })).toMatchObject({ status: 404, body: { type: "PRODUCT_NOT_FOUND" } });
			expect((await http("GET", `/products/${created.id}`)).body).toEqual({ ...created, rating: null, availability: null });
			expect((await outbox(broker)).length).toBe(eventsBefore);
		});

		it("archives for the catalog role: 204, gone from the public, once, and no longer editable", async () => {
			const created = (await http("POST", "/products", { token: tokens.catalog, body: newProduct("GONE-1") })).body;
			expect((await http("DELETE", `/products/${created.id}`)).status).toBe(401);
			expect((await http("DELETE", `/products/${created.id}`, { token: tokens.customer })).status).toBe(403);
			expect((await http("DELETE", `/products/${created.id}`, { token: tokens.support })).status).toBe(403);
			expect((await http("GET", `/products/${created.id}`)).status).toBe(200);
			const r = await http("DELETE", `/products/${created.id}`, { token: tokens.catalog });
			expect([r.status, r.body]).toEqual([204, null]);
			expect((await http("GET", `/products/${created.id}`)).status).toBe(404);
			expect((await http("GET", `/products/${created.id}`, { token: tokens.support })).body.status).toBe("archived");
			expect((await http("GET", "/products?brand=Zephyr&pageSize=100")).body.items.map((p: any) => p.id)).not.toContain(created.id);
			expect((await http("DELETE", `/products/${created.id}`, { token: tokens.catalog })).status).toBe(204);
			expect((await http("PATCH", `/products/${created.id}`, { body: { name: "Back" }, token: tokens.catalog })).status).toBe(404);
			expect((await http("DELETE", "/products/00000000-0000-0000-0000-000000000000", { token: tokens.catalog })).status).toBe(404);
			const events = (await outbox(broker)).filter(e => e.payload.productId === created.id);
			expect(events.map(e => e.name)).toEqual(["catalog.product.created", "catalog.product.archived"]);
			expect(events[1].payload).toEqual({ eventId: expect.any(String), occurredAt: expect.any(String), productId: created.id, sku: "GONE-1" });
		});

		it("gives one of several simultaneous creates of a SKU 201 and the others 409 SKU_TAKEN", async () => {
			const answers = await Promise.all([1, 2, 3, 4].map(i => http("POST", "/products", { token: tokens.catalog, body: newProduct("RACE-1", { name: `Racer ${i}` }) })));
			expect(answers.map(a => a.status).sort()).toEqual([201, 409, 409, 409]);
			for (const a of answers.filter(x => x.status === 409)) expect(a.body).toEqual({ name: "ConflictError", message: expect.any(String), code: 409, type: "SKU_TAKEN" });
			const winner = answers.find(a => a.status === 201)!.body;
			const zephyrs = (await http("GET", "/products?brand=Zephyr&pageSize=100")).body.items.filter((p: any) => p.sku === "RACE-1");
			expect(zephyrs).toEqual([winner]);
			expect((await outbox(broker)).filter(e => e.payload.sku === "RACE-1").map(e => [e.name, e.payload.productId])).toEqual([["catalog.product.created", winner.id]]);
			expect(await http("POST", "/products", { token: tokens.catalog, body: newProduct("RACE-1") })).toMatchObject({ status: 409, body: { type: "SKU_TAKEN" } });
		});

		it("refuses bad products with 422 (400/415 for bodies that are not JSON) and writes nothing", async () => {
			const rowsBefore = await productCount(broker);
			const eventsBefore = (await outbox(broker)).length;
			const p = newProduct;
			const bad: [string, unknown][] = [
				["price as a decimal string", p("BAD-1", { price: { amount: "45.99", currency: "USD" } })],
				["price as a float", p("BAD-2", { price: { amount: 45.99, currency: "USD" } })],
				["price without currency", p("BAD-3", { price: { amount: 4599 } })],
				["price in euros", p("BAD-4", { price: { amount: 4599, currency: "EUR" } })],
				["negative price", p("BAD-5", { price: { amount: -1, currency: "USD" } })],
				["huge price", p("BAD-6", { price: { amount: 1e12, currency: "USD" } })],
				["weight as a string", p("BAD-7", { weightGrams: "900" })],
				["zero weight", p("BAD-8", { weightGrams: 0 })],
				["huge weight", p("BAD-9", { weightGrams: 1e9 })],
				["name as a number", p("BAD-10", { name: 42 })],
				["blank name", p("BAD-11", { name: "   " })],
				["long name", p("BAD-12", { name: "n".repeat(201) })],
				["long description", p("BAD-13", { description: "d".repeat(5001) })],
				["long brand", p("BAD-14", { brand: "b".repeat(81) })],
				["sku with a space", p("bad 15")],
				["sku with a star", p("B1*")],
				["missing sku", { ...p("X"), sku: undefined }],
				["unknown category", p("BAD-16", { categoryId: "no-such-category" })],
				["archived status", p("BAD-17", { status: "archived" })],
				["nested attributes", p("BAD-18", { attributes: { size: { w: 1 } } })],
				["attributes as an array", p("BAD-19", { attributes: ["red"] })],
				["too many attributes", p("BAD-20", { attributes: Object.fromEntries(Array.from({ length: 31 }, (_, i) => [`a${i}`, i])) })],
				["images not urls", p("BAD-21", { images: ["not a url"] })],
				["too many images", p("BAD-22", { images: Array.from({ length: 21 }, (_, i) => `https://img.example.com/${i}.jpg`) })],
				["unknown field", p("BAD-23", { id: "00000000-0000-0000-0000-000000000001" })],
				["rating set by the client", p("BAD-24", { ratingAverage: 5 })],
				["unknown field in the price", p("BAD-25", { price: { amount: 4599, currency: "USD", taxIncluded: true } })],
				["an array body", [p("BAD-26")]],
			];
			for (const [what, body] of bad) {
				const r = await http("POST", "/products", { token: tokens.catalog, body });
				expect([what, r.status, r.body.code, r.body.type]).toEqual([what, 422, 422, "VALIDATION_ERROR"]);
				expect([what, Array.isArray(r.body.data) && r.body.data.length > 0]).toEqual([what, true]);
				expect(r.body).not.toHaveProperty("stack");
			}
			expect((await http("POST", "/products", { token: tokens.catalog, raw: '{"sku": "BAD-30",' })).status).toBe(400);
			expect((await http("POST", "/products", { token: tokens.catalog, raw: "sku=BAD-31", contentType: "text/plain" })).status).toBe(415);
			expect(await productCount(broker)).toBe(rowsBefore);
			expect((await outbox(broker)).length).toBe(eventsBefore);
		});
	});

	describe("internal actions", () => {
		it("getMany answers known ids with weight and status, drafts and archived ones included", async () => {
			const [a, b] = DEMO_PRODUCTS;
			const gone = (await http("POST", "/products", { token: tokens.catalog, body: newProduct("MANY-1") })).body;
			await http("DELETE", `/products/${gone.id}`, { token: tokens.catalog });
			const items: any[] = await broker.call("catalog.getMany", { ids: [a.id, b.id, gone.id, "no-such-id"] });
			expect(items.sort((x, y) => x.sku.localeCompare(y.sku))).toEqual(
				[
					{ id: a.id, sku: a.sku, name: a.name, price: a.price, status: "active", weightGrams: a.weightGrams },
					{ id: b.id, sku: b.sku, name: b.name, price: b.price, status: "active", weightGrams: b.weightGrams },
					{ id: gone.id, sku: "MANY-1", name: gone.name, price: gone.price, status: "archived", weightGrams: 900 },
				].sort((x, y) => x.sku.localeCompare(y.sku)),
			);
			expect(await broker.call("catalog.getMany", { ids: [] })).toEqual([]);
			await expect(broker.call("catalog.getMany", { ids: "x" })).rejects.toMatchObject({ code: 422 });
		});

		it("are not in the gateway's route table", () => {
			const { PUBLIC_ROUTES } = require("../../../services/edge/routes") as typeof import("../../../services/edge/routes");
			const catalogRoutes = Object.values(PUBLIC_ROUTES).filter(a => a.startsWith("catalog."));
			expect(catalogRoutes.sort()).toEqual(["catalog.archive", "catalog.categories", "catalog.create", "catalog.createCategory", "catalog.deleteCategory", "catalog.get", "catalog.list", "catalog.update", "catalog.updateCategory"]);
		});

		it("keeps the rating summary from reviews.review.published, ignoring a late older one", async () => {
			const { DbMixin } = require("../../../mixins/db.mixin") as typeof import("../../../mixins/db.mixin");
			const { OutboxMixin, outboxMigrations } = require("../../../mixins/outbox.mixin") as typeof import("../../../mixins/outbox.mixin");
			// Publishes as the reviews service does, through its own outbox.
			const feed = broker.createService({
				name: "reviewsfeed",
				mixins: [DbMixin({ name: "reviewsfeed", migrations: outboxMigrations, models: () => ({}) }), OutboxMixin],
				actions: {
					publish: {
						params: { productId: "string", average: "number", count: "number" },
						handler(this: any, ctx: any) {
							const { productId, average, count } = ctx.params;
							return this.transaction((t: any) => this.recordEvent(t, "reviews.review.published", { reviewId: `r-${count}`, productId, rating: 5, summary: { average, count } }));
						},
					},
				},
			} as any);
			await broker.waitForServices(["reviewsfeed"], 10_000);
			const product = DEMO_PRODUCTS[5];
			const rating = async () => ((await broker.call("catalog.snapshots", { pageSize: 500 })) as any).items.find((s: any) => s.productId === product.id).rating;
			expect(await rating()).toBeNull();
			await broker.call("reviewsfeed.publish", { productId: product.id, average: 4.5, count: 2 });
			await waitFor(async () => (await rating())?.count === 2, 10_000);
			await broker.call("reviewsfeed.publish", { productId: product.id, average: 4, count: 3 });
			await waitFor(async () => (await rating())?.count === 3, 10_000);
			// A summary of fewer reviews is older: applied (recorded in the inbox), it changes nothing.
			await broker.call("reviewsfeed.publish", { productId: product.id, average: 3, count: 1 });
			const applied = async () => ((await (broker.getLocalService("catalog") as any).sequelize.query("SELECT event_name FROM inbox_events", { type: "SELECT" })) as any[]).filter(r => r.event_name === "reviews.review.published").length;
			await waitFor(async () => (await applied()) === 3, 10_000);
			expect(await rating()).toEqual({ average: 4, count: 3 });
			await broker.destroyService(feed);
		});
	});
});
