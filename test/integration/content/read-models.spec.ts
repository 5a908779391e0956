/**
 * Search's read models keep the newest state under concurrent, shuffled and repeated events
 * (issue 8), on SQLite and PostgreSQL: the handlers of `warehouse.stock.changed` and
 * `reviews.review.published` run concurrently in their own transactions, as replicas would, and
 * the row ends with the newest stamp / the summary with the most reviews (lib/db/newer-upsert.ts).
 */
import { randomUUID } from "node:crypto";
import type { ServiceBroker } from "moleculer";
import { resetConfig } from "../../../config";
import { useTestEnv } from "../../support/env";
import { PG_URL, dropDatabases, pgPrefix } from "../events/helpers";

jest.setTimeout(90_000);
const prefix = pgPrefix("readmodels");

const shuffle = <T>(xs: T[]): T[] => xs.map(x => ({ x, k: Math.random() })).sort((a, b) => a.k - b.k).map(v => v.x);

describe.each([
	["SQLite", {}],
	["PostgreSQL", { DATABASE_URL: PG_URL, DB_NAME_PREFIX: prefix }],
])("search read models on %s", (_dialect, env: Record<string, string>) => {
	let broker: ServiceBroker;
	let search: any;

	beforeAll(async () => {
		useTestEnv({ SEED_DEMO: "false" });
		delete process.env.DATABASE_URL;
		Object.assign(process.env, env);
		resetConfig();
		const { createBroker } = require("../../../lib/broker") as typeof import("../../../lib/broker");
		broker = createBroker(["catalog", "search"], { logger: false, namespace: `readmodels-${Math.random().toString(36).slice(2)}` });
		await broker.start();
		search = broker.getLocalService("search");
	});

	afterAll(async () => {
		await broker?.stop();
		if (env.DATABASE_URL) await dropDatabases(prefix);
		delete process.env.DATABASE_URL;
	});

	/** Runs one handler as the consumer does: in a transaction of its own. */
	const handle = (name: string, event: Record<string, unknown>) => search.transaction((t: any) => search.schema.subscriptions[name].call(search, event, t));

	it("keeps the newest stock state of a sku whatever the order, duplication and concurrency", async () => {
		const base = Date.UTC(2026, 0, 1);
		const events = Array.from({ length: 12 }, (_, i) => ({ eventId: randomUUID(), occurredAt: new Date(base + i).toISOString(), sku: "SKU-RM-1", warehouseId: "wh", onHand: i, reserved: 0, totalAvailable: i % 2 }));
		const newest = events[events.length - 1];
		await Promise.all(shuffle([...events, ...events.slice(0, 4)]).map(e => handle("warehouse.stock.changed", e)));
		const row: any = await search.models.Stock.findByPk("SKU-RM-1", { raw: true });
		expect(row.in_stock === true || row.in_stock === 1).toBe(newest.totalAvailable > 0);
		const [stamp] = await search.sequelize.query("SELECT source_stamp FROM search_stock WHERE sku = 'SKU-RM-1'", { type: "SELECT" });
		expect(stamp.source_stamp).toBe(`${newest.occurredAt}|${newest.eventId}`);
		// A late, older event changes nothing.
		await handle("warehouse.stock.changed", { ...events[0], eventId: randomUUID() });
		const [again] = await search.sequelize.query("SELECT source_stamp FROM search_stock WHERE sku = 'SKU-RM-1'", { type: "SELECT" });
		expect(again.source_stamp).toBe(stamp.source_stamp);
	});

	it("keeps the rating summary with the most reviews whatever the order, duplication and concurrency", async () => {
		const summaries = Array.from({ length: 10 }, (_, i) => ({ eventId: randomUUID(), occurredAt: new Date().toISOString(), reviewId: `r${i}`, productId: "prod-rm-1", rating: 4, summary: { average: 4, count: i + 1 } }));
		await Promise.all(shuffle([...summaries, ...summaries.slice(3, 6)]).map(e => handle("reviews.review.published", e)));
		expect(await search.models.Rating.findByPk("prod-rm-1", { raw: true })).toMatchObject({ count: 10 });
	});
});
