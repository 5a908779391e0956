/**
 * Categories through the real gateway (api, identity, catalog and search in one broker), on
 * SQLite and on PostgreSQL, starting from an empty shop (no demo data): a tree built, renamed,
 * moved and pruned by the catalog role; no cycle, no duplicate slug and no deletion of a
 * category in use, also when requests race; the product list and search follow every change
 * (events); and bad input on every endpoint gets its documented 4xx and writes nothing.
 */
import type { ServiceBroker } from "moleculer";
import { useTestEnv } from "../../support/env";
import { PG_URL, dropDatabases, pgPrefix, waitFor } from "../events/helpers";
import { type Http, callers, gatewayClient, outbox } from "./support";

jest.setTimeout(120_000);

describe.each([
	["SQLite", {}],
	["PostgreSQL", { DATABASE_URL: PG_URL, DB_NAME_PREFIX: pgPrefix("cats") }],
])("categories on %s", (_db, env: Record<string, string>) => {
	let broker: ServiceBroker;
	let http: Http;
	let tokens: Awaited<ReturnType<typeof callers>>;
	let n = 0;

	const create = (body: Record<string, unknown>) => http("POST", "/categories", { token: tokens.catalog, body });
	const patch = (id: string, body: Record<string, unknown>) => http("PATCH", `/categories/${id}`, { token: tokens.catalog, body });
	const remove = (id: string) => http("DELETE", `/categories/${id}`, { token: tokens.catalog });
	const list = async () => (await http("GET", "/categories")).body.items as { id: string; slug: string; name: string; parentId: string | null }[];
	const made = async (slug: string, parentId?: string) => {
		const r = await create({ slug, name: slug.replace(/-/g, " "), ...(parentId && { parentId }) });
		expect([slug, r.status]).toEqual([slug, 201]);
		return r.body as { id: string; slug: string; name: string; parentId: string | null };
	};
	const product = async (categoryId: string, name = `Item ${++n}`) => {
		const r = await http("POST", "/products", { token: tokens.catalog, body: { sku: `CAT-${++n}`, name, brand: "Acme", categoryId, price: { amount: 1999, currency: "USD" }, weightGrams: 300 } });
		expect(r.status).toBe(201);
		return r.body as { id: string; sku: string };
	};
	const listed = async (category: string) => ((await http("GET", `/products?category=${category}&pageSize=100`)).body.items as { id: string }[]).map(p => p.id).sort();
	const searched = async (query: string) => (await http("GET", `/search?${query}&pageSize=100`)).body;
	const categoryEvents = async () => (await outbox(broker)).filter(e => e.name.startsWith("catalog.category."));
	const answer = (r: { status: number; body: unknown }) => ({ status: r.status, body: r.body });
	const tableCount = () => (broker.getLocalService("catalog") as any).models.Category.count() as Promise<number>;

	beforeAll(async () => {
		useTestEnv({ ...env, SEED_DEMO: "false", AUTH_RATE_LIMIT_MAX: "1000", RATE_LIMIT_MAX: "100000" });
		const { createBroker } = require("../../../lib/broker") as typeof import("../../../lib/broker");
		broker = createBroker(["api", "auth", "users", "customers", "catalog", "search"], { logger: false, namespace: `cats-${Math.random().toString(36).slice(2)}` });
		await broker.start();
		http = gatewayClient(broker);
		tokens = await callers(http);
	});

	afterAll(async () => {
		await broker?.stop();
		if (env.DATABASE_URL) await dropDatabases(env.DB_NAME_PREFIX);
	});

	it("starts empty, then builds a tree the catalog role creates, each change one event with the category as it is", async () => {
		expect(await list()).toEqual([]);
		const audio = await made("audio");
		expect(audio).toEqual({ id: expect.any(String), slug: "audio", name: "audio", parentId: null });
		const headphones = await made("headphones", audio.id);
		expect(headphones.parentId).toBe(audio.id);
		expect(await list()).toEqual([audio, headphones]);
		expect((await categoryEvents()).map(e => [e.name, e.payload.categoryId, e.payload.slug, e.payload.parentId])).toEqual([
			["catalog.category.created", audio.id, "audio", null],
			["catalog.category.created", headphones.id, "headphones", audio.id],
		]);
		expect((await categoryEvents())[1].payload).toEqual({ categoryId: headphones.id, slug: "headphones", name: "headphones", parentId: audio.id, updatedAt: expect.any(String), eventId: expect.any(String), occurredAt: expect.any(String) });
	});

	it("gives one of two simultaneous creates of a slug 201 and the other 409 SLUG_TAKEN; a rename onto a taken slug is 409 too", async () => {
		const [a, b] = await Promise.all([create({ slug: "racing-slug", name: "A" }), create({ slug: "racing-slug", name: "B" })]);
		expect([a.status, b.status].sort()).toEqual([201, 409]);
		expect([a, b].find(r => r.status === 409)!.body).toMatchObject({ code: 409, type: "SLUG_TAKEN" });
		const other = await made("other-slug");
		const before = await categoryEvents();
		expect(await patch(other.id, { slug: "racing-slug" })).toMatchObject({ status: 409, body: { type: "SLUG_TAKEN" } });
		expect((await list()).find(c => c.id === other.id)!.slug).toBe("other-slug");
		expect(await categoryEvents()).toHaveLength(before.length);
	});

	it("refuses an unknown parent and every move that would close a cycle with 422 on parentId, changing nothing", async () => {
		const top = await made("cycle-top");
		const mid = await made("cycle-mid", top.id);
		const leaf = await made("cycle-leaf", mid.id);
		const before = { rows: await list(), events: (await categoryEvents()).length };
		const refusals = [
			await create({ slug: "orphan", name: "Orphan", parentId: "no-such-category" }),
			await patch(top.id, { parentId: top.id }),
			await patch(top.id, { parentId: mid.id }),
			await patch(top.id, { parentId: leaf.id }),
			await patch(mid.id, { parentId: leaf.id }),
			await patch(leaf.id, { parentId: "no-such-category" }),
		];
		for (const r of refusals) expect([r.status, r.body.type, r.body.data?.[0]?.field]).toEqual([422, "VALIDATION_ERROR", "parentId"]);
		expect(await list()).toEqual(before.rows);
		expect(await categoryEvents()).toHaveLength(before.events);
	});

	it("never closes a cycle when two opposite moves race", async () => {
		for (let i = 0; i < 4; i++) {
			const a = await made(`race-a-${i}`);
			const b = await made(`race-b-${i}`);
			const [ab, ba] = await Promise.all([patch(a.id, { parentId: b.id }), patch(b.id, { parentId: a.id })]);
			// One move wins; the other then sees the cycle it would close.
			expect([ab.status, ba.status].sort()).toEqual([200, 422]);
			const rows = await list();
			const parentOf = (id: string) => rows.find(c => c.id === id)!.parentId;
			expect(parentOf(a.id) === b.id && parentOf(b.id) === a.id).toBe(false);
		}
	});

	it("renames and moves a category; the product list and search follow, facets showing the new slug", async () => {
		const gear = await made("gear");
		const cameras = await made("cameras", gear.id);
		const p = await product(cameras.id, "Lumix Travel Camera");
		expect(await listed("gear")).toEqual([p.id]);
		await waitFor(async () => (await searched("q=lumix&category=gear")).total === 1);

		const photo = await made("photo");
		const moved = await patch(cameras.id, { parentId: photo.id, name: "Digital Cameras", slug: "digital-cameras" });
		expect(answer(moved)).toEqual({ status: 200, body: { id: cameras.id, slug: "digital-cameras", name: "Digital Cameras", parentId: photo.id } });
		expect(await listed("gear")).toEqual([]);
		expect(await listed("photo")).toEqual([p.id]);
		expect(await listed("digital-cameras")).toEqual([p.id]);
		expect(await listed("cameras")).toEqual([]);

		await waitFor(async () => (await searched("q=lumix&category=photo")).total === 1);
		const found = await searched("q=lumix");
		expect(found.facets.category).toEqual([{ value: "digital-cameras", count: 1 }]);
		expect((await searched("q=lumix&category=gear")).total).toBe(0);
		// The category's new name is searchable text of its products.
		expect((await searched("q=digital")).items.map((i: any) => i.id)).toEqual([p.id]);

		const events = (await categoryEvents()).filter(e => e.payload.categoryId === cameras.id);
		expect(events.map(e => e.name)).toEqual(["catalog.category.created", "catalog.category.updated"]);
		expect(events[1].payload).toMatchObject({ slug: "digital-cameras", name: "Digital Cameras", parentId: photo.id });
	});

	it("answers a PATCH that changes nothing with the category as it is, and records no event", async () => {
		const same = await made("unchanging");
		const before = (await categoryEvents()).length;
		expect(answer(await patch(same.id, { name: "unchanging", slug: "unchanging", parentId: null }))).toEqual({ status: 200, body: same });
		expect(answer(await patch(same.id, {}))).toEqual({ status: 200, body: same });
		expect(await categoryEvents()).toHaveLength(before);
	});

	it("deletes an empty category (204) and refuses one with sub-categories or live products with 409 CATEGORY_NOT_EMPTY", async () => {
		const parent = await made("full-parent");
		const child = await made("full-child", parent.id);
		const p = await product(child.id);
		expect(await remove(parent.id)).toMatchObject({ status: 409, body: { code: 409, type: "CATEGORY_NOT_EMPTY" } });
		expect(await remove(child.id)).toMatchObject({ status: 409, body: { type: "CATEGORY_NOT_EMPTY" } });
		// An archived product no longer holds its category.
		expect((await http("DELETE", `/products/${p.id}`, { token: tokens.catalog })).status).toBe(204);
		expect(answer(await remove(child.id))).toEqual({ status: 204, body: null });
		expect(await remove(parent.id)).toMatchObject({ status: 204 });
		expect((await list()).some(c => c.id === parent.id || c.id === child.id)).toBe(false);
		expect((await categoryEvents()).filter(e => e.name === "catalog.category.deleted").map(e => e.payload.slug)).toEqual(expect.arrayContaining(["full-child", "full-parent"]));
		expect(await remove(parent.id)).toMatchObject({ status: 404, body: { type: "CATEGORY_NOT_FOUND" } });
		// A deleted category's slug is free again; a product cannot go into the deleted one.
		expect((await create({ slug: "full-parent", name: "Again" })).status).toBe(201);
		expect((await http("POST", "/products", { token: tokens.catalog, body: { sku: "CAT-GONE", name: "Gone", brand: "Acme", categoryId: child.id, price: { amount: 100, currency: "USD" }, weightGrams: 1 } })).status).toBe(422);
	});

	it("never leaves a product in a deleted category when a delete races a product create", async () => {
		for (let i = 0; i < 5; i++) {
			const c = await made(`racing-delete-${i}`);
			const [deleted, created] = await Promise.all([
				remove(c.id),
				http("POST", "/products", { token: tokens.catalog, body: { sku: `RACE-DEL-${i}`, name: "Racer", brand: "Acme", categoryId: c.id, price: { amount: 100, currency: "USD" }, weightGrams: 1 } }),
			]);
			// Either the product landed first and the category stays, or the category went first and the create is refused.
			expect([[204, 422], [409, 201]]).toContainEqual([deleted.status, created.status]);
			const exists = (await list()).some(x => x.id === c.id);
			expect(exists).toBe(deleted.status === 409);
		}
	});

	it("lets only the catalog role (or a superadmin) change categories: 401 without a token, 403 for others, 200 for anyone reading", async () => {
		const c = await made("guarded");
		const before = { rows: await tableCount(), events: (await categoryEvents()).length };
		const attempts: [string | undefined, number, string][] = [
			[undefined, 401, "UNAUTHORIZED"],
			[tokens.customer, 403, "FORBIDDEN"],
			[tokens.support, 403, "MISSING_ROLE"],
		];
		for (const [token, status, type] of attempts) {
			expect([(await http("POST", "/categories", { token, body: { slug: "guarded-2", name: "G" } })).body.type, status]).toEqual([type, status]);
			expect((await http("PATCH", `/categories/${c.id}`, { token, body: { name: "G" } })).status).toBe(status);
			expect((await http("DELETE", `/categories/${c.id}`, { token })).status).toBe(status);
		}
		expect((await http("GET", "/categories")).status).toBe(200);
		expect((await http("POST", "/categories", { token: tokens.superadmin, body: { slug: "by-superadmin", name: "S" } })).status).toBe(201);
		expect(await tableCount()).toBe(before.rows + 1);
		expect(await categoryEvents()).toHaveLength(before.events + 1);
	});

	it("refuses bad category input with 422 (400/415 for bodies that are not JSON, 404 for unknown ids) and writes nothing", async () => {
		const c = await made("valid-one");
		const before = { rows: await list(), events: (await categoryEvents()).length };
		const badCreates: [string, unknown][] = [
			["no slug", { name: "No slug" }],
			["no name", { slug: "no-name" }],
			["upper-case slug", { slug: "Audio", name: "A" }],
			["slug with a space", { slug: "two words", name: "A" }],
			["slug with an underscore", { slug: "two_words", name: "A" }],
			["slug with a double hyphen", { slug: "two--words", name: "A" }],
			["slug ending in a hyphen", { slug: "word-", name: "A" }],
			["slug with a NUL", { slug: "nul\u0000slug", name: "A" }],
			["empty slug", { slug: "", name: "A" }],
			["long slug", { slug: "s".repeat(81), name: "A" }],
			["slug as a number", { slug: 42, name: "A" }],
			["blank name", { slug: "blank-name", name: "   " }],
			["name with a NUL", { slug: "nul-name", name: "Lee\u0000" }],
			["name with a line break", { slug: "break-name", name: "two\nlines" }],
			["long name", { slug: "long-name", name: "n".repeat(121) }],
			["parentId as a number", { slug: "num-parent", name: "A", parentId: 7 }],
			["unknown field", { slug: "extra-field", name: "A", id: "00000000-0000-0000-0000-000000000001" }],
			["an array body", [{ slug: "array-body", name: "A" }]],
		];
		for (const [what, body] of badCreates) {
			const r = await http("POST", "/categories", { token: tokens.catalog, body });
			expect([what, r.status, r.body.code, r.body.type]).toEqual([what, 422, 422, "VALIDATION_ERROR"]);
			expect(r.body).not.toHaveProperty("stack");
		}
		const badPatches: [string, unknown][] = [
			["upper-case slug", { slug: "VALID" }],
			["blank name", { name: "" }],
			["name with a NUL", { name: "x\u0000" }],
			["parentId as an object", { parentId: { id: c.id } }],
			["unknown field", { status: "active" }],
		];
		for (const [what, body] of badPatches) {
			const r = await http("PATCH", `/categories/${c.id}`, { token: tokens.catalog, body });
			expect([what, r.status, r.body.type]).toEqual([what, 422, "VALIDATION_ERROR"]);
		}
		expect(await patch("no-such-category", { name: "X" })).toMatchObject({ status: 404, body: { code: 404, type: "CATEGORY_NOT_FOUND" } });
		expect(await remove("no-such-category")).toMatchObject({ status: 404, body: { type: "CATEGORY_NOT_FOUND" } });
		expect((await http("POST", "/categories", { token: tokens.catalog, raw: '{"slug": "x",' })).status).toBe(400);
		expect((await http("PATCH", `/categories/${c.id}`, { token: tokens.catalog, raw: "name=x", contentType: "text/plain" })).status).toBe(415);
		expect(await list()).toEqual(before.rows);
		expect(await categoryEvents()).toHaveLength(before.events);
	});
});
