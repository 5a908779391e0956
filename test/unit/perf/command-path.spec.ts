/**
 * Pieces of the lean command path (issue 7), without a database or a network: statements sent as
 * named prepared statements with a bound per connection (lib/db/sql.ts), invalidation broadcasts
 * coalesced under load (lib/cache.ts), and the JSON body parser's fast path agreeing with its exact
 * one on every number (lib/http-body.ts; fast-check).
 */
import fc from "fast-check";
import { BROADCAST_COALESCE_MS, invalidateFor } from "../../../lib/cache";
import { PREPARED_PER_CONNECTION, pgQuery } from "../../../lib/db/sql";
import { parseJsonBody, roundedToWhole } from "../../../lib/http-body";

/** A pg client that records what it was asked. */
function fakeClient() {
	const seen: { name?: string; text: string; values?: unknown[] }[] = [];
	return { seen, query: (config: { name?: string; text: string; values?: unknown[] }) => (seen.push(config), Promise.resolve({ rows: [], rowCount: 0 })) };
}

describe("statements on PostgreSQL", () => {
	it("go as named prepared statements: one name per text, the same on every connection, another for another text", async () => {
		const [a, b] = [fakeClient(), fakeClient()];
		await pgQuery(a, "SELECT $1", [1]);
		await pgQuery(a, "SELECT $1", [2]);
		await pgQuery(b, "SELECT $1", [3]);
		await pgQuery(a, "SELECT $1 + 1", [4]);
		const names = [...a.seen, ...b.seen].map(q => q.name);
		expect(names[0]).toMatch(/^mc_[0-9a-f]{24}$/);
		expect(names[1]).toBe(names[0]);
		expect(b.seen[0].name).toBe(names[0]);
		expect(a.seen[2].name).not.toBe(names[0]);
		expect(a.seen.map(q => q.values)).toEqual([[1], [2], [4]]);
	});

	it("keep at most PREPARED_PER_CONNECTION prepared on one connection; further texts go unnamed, known ones stay named", async () => {
		const c = fakeClient();
		for (let i = 0; i < PREPARED_PER_CONNECTION + 10; i++) await pgQuery(c, `SELECT ${i}`);
		expect(c.seen.filter(q => q.name).length).toBe(PREPARED_PER_CONNECTION);
		expect(c.seen.slice(PREPARED_PER_CONNECTION).every(q => q.name === undefined)).toBe(true);
		await pgQuery(c, "SELECT 0");
		expect(c.seen.at(-1)!.name).toBe(c.seen[0].name);
	});
});

describe("invalidation broadcasts", () => {
	/** A broker with a cacher and a transit, recording broadcasts and cleans in order. */
	function fakeBroker() {
		const log: string[] = [];
		const broadcasts: { events: string[] }[] = [];
		const broker = {
			transit: {},
			cacher: { clean: (patterns: string[]) => (log.push(`clean ${patterns.length}`), Promise.resolve()) },
			broadcast: (_name: string, payload: { events: string[] }) => (log.push("broadcast"), broadcasts.push(payload), Promise.resolve()),
		};
		return { broker: broker as any, log, broadcasts };
	}
	const tick = (ms: number) => new Promise(r => setTimeout(r, ms));

	it("for customers' traffic (stock, reviews): at once after a quiet spell, then at most one per window carrying every event since, each after its cleans", async () => {
		const { broker, log, broadcasts } = fakeBroker();
		invalidateFor(broker, ["warehouse.stock.changed"]);
		await tick(5);
		expect(broadcasts).toEqual([{ events: ["warehouse.stock.changed"] }]);
		expect(log).toEqual(["clean 3", "broadcast"]);
		invalidateFor(broker, ["warehouse.stock.changed"]);
		invalidateFor(broker, ["reviews.review.published"]);
		invalidateFor(broker, ["orders.order.confirmed"]); // makes nothing stale: no clean, no broadcast of it
		await tick(5);
		// Cleaned here at once, told to the others at the end of the window.
		expect(broadcasts.length).toBe(1);
		expect(log.filter(l => l.startsWith("clean")).length).toBe(3);
		await tick(BROADCAST_COALESCE_MS + 20);
		expect(broadcasts).toEqual([{ events: ["warehouse.stock.changed"] }, { events: ["warehouse.stock.changed", "reviews.review.published"] }]);
		// Quiet again: the next one goes at once.
		await tick(BROADCAST_COALESCE_MS + 10);
		invalidateFor(broker, ["reviews.review.published"]);
		await tick(5);
		expect(broadcasts.at(-1)).toEqual({ events: ["reviews.review.published"] });
	});

	it("for an operator's change (product, category, warehouse): at once, before the change's answer can leave, even inside a busy window", () => {
		const { broker, broadcasts } = fakeBroker();
		invalidateFor(broker, ["warehouse.stock.changed"]);
		invalidateFor(broker, ["warehouse.stock.changed"]); // a window is open now
		// Synchronously: nothing between the commit's hook and the broadcast.
		invalidateFor(broker, ["catalog.product.archived"]);
		expect(broadcasts).toContainEqual({ events: ["catalog.product.archived"] });
		invalidateFor(broker, ["catalog.category.updated", "warehouse.warehouse.updated"]);
		expect(broadcasts).toContainEqual({ events: ["catalog.category.updated", "warehouse.warehouse.updated"] });
	});
});

describe("the JSON body's numbers", () => {
	/** What the exact (reviver) path refuses: a number a double cannot hold as it was written. */
	const inexact = (text: string) => {
		const v = Number(text);
		return !Number.isFinite(v) || (!Number.isSafeInteger(v) && /^-?\d+$/.test(text)) || roundedToWhole(v, text);
	};
	const digits = (min: number, max: number) => fc.array(fc.constantFrom(..."0123456789"), { minLength: min, maxLength: max, size: "max" }).map(d => d.join(""));
	const number = fc
		.tuple(fc.boolean(), digits(1, 22), fc.option(digits(1, 22)), fc.option(fc.integer({ min: -400, max: 400 })))
		.map(([neg, int, frac, exp]) => `${neg ? "-" : ""}${int.replace(/^0+(?=\d)/, "")}${frac !== null ? `.${frac}` : ""}${exp !== null ? `e${exp}` : ""}`);

	it("are refused exactly when they cannot be held as written, whether the parse takes the fast path or not", () => {
		fc.assert(
			fc.property(number, fc.constantFrom("", " ", "\"name\": \"x\", "), (text, before) => {
				let refused = false;
				let value: unknown;
				try {
					value = parseJsonBody(`{${before}"n": ${text}}`, 32)?.n;
				} catch (err) {
					refused = (err as { code?: number }).code === 422;
				}
				expect(refused).toBe(inexact(text));
				if (!refused) expect(value).toBe(Number(text));
			}),
			{ numRuns: 3000 },
		);
	});
});

describe("products by id on the command path (lib/catalog/products-by-id.ts)", () => {
	const { ServiceBroker } = require("moleculer") as typeof import("moleculer");
	const { cacherFor, cleanFor } = require("../../../lib/cache") as typeof import("../../../lib/cache");
	const { productsById } = require("../../../lib/catalog/products-by-id") as typeof import("../../../lib/catalog/products-by-id");
	const catalog = new Map<string, { id: string; price: { amount: number; currency: string }; status: string }>();
	const asked: string[][] = [];
	let gate: Promise<void> | undefined;
	const broker = new ServiceBroker({ logger: false, cacher: cacherFor(undefined, "t") as any });
	broker.createService({
		name: "catalog",
		actions: {
			async getMany(ctx: any) {
				asked.push([...ctx.params.ids]);
				// Read first, answer when the gate opens: a read that began before a change committed.
				const rows = ctx.params.ids.flatMap((id: string) => (catalog.has(id) ? [structuredClone(catalog.get(id)!)] : []));
				await gate;
				return rows;
			},
		},
	});
	const read = (ids: string[]) => broker.call("$node.health").then(() => productsById<any>((broker as any).ContextFactory.create(broker, null, {}, {}), ids));
	beforeAll(() => broker.start());
	afterAll(() => broker.stop());
	beforeEach(async () => {
		asked.length = 0;
		await cleanFor(broker, ["catalog.product.updated"]);
	});

	it("asks catalog only for what it has not cached, each id once, and remembers ids catalog does not have", async () => {
		catalog.set("a", { id: "a", price: { amount: 100, currency: "USD" }, status: "active" });
		catalog.set("b", { id: "b", price: { amount: 200, currency: "USD" }, status: "archived" });
		expect((await read(["a", "a"])).map(p => p.id)).toEqual(["a"]);
		expect((await read(["b", "a", "nope"])).map(p => p.id).sort()).toEqual(["a", "b"]);
		expect(await read(["a", "b", "nope"])).toHaveLength(2);
		expect(asked).toEqual([["a"], ["b", "nope"]]);
	});

	it("hands out copies: a caller changing what it got changes nothing cached", async () => {
		catalog.set("a", { id: "a", price: { amount: 100, currency: "USD" }, status: "active" });
		(await read(["a"]))[0].price.amount = 1;
		(await read(["a"]))[0].price.amount = 2;
		expect((await read(["a"]))[0].price.amount).toBe(100);
	});

	it("follows a product event's clean, and does not keep what it read while a clean happened", async () => {
		catalog.set("a", { id: "a", price: { amount: 100, currency: "USD" }, status: "active" });
		expect((await read(["a"]))[0].price.amount).toBe(100);
		catalog.set("a", { id: "a", price: { amount: 150, currency: "USD" }, status: "active" });
		expect((await read(["a"]))[0].price.amount).toBe(100); // until the event's clean
		await cleanFor(broker, ["catalog.product.updated"]);
		// A read in flight across a clean answers what it read but does not store it.
		let open!: () => void;
		gate = new Promise(r => (open = r));
		const inFlight = read(["a"]);
		await new Promise(r => setTimeout(r, 10));
		catalog.set("a", { id: "a", price: { amount: 175, currency: "USD" }, status: "active" });
		await cleanFor(broker, ["catalog.product.updated"]);
		open();
		gate = undefined;
		expect((await inFlight)[0].price.amount).toBe(150);
		expect((await read(["a"]))[0].price.amount).toBe(175);
	});
});
