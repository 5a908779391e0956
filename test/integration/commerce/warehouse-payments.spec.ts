/**
 * Warehouse and payments against their real databases (SQLite and PostgreSQL): concurrency,
 * idempotency and the state machines.
 */
import type { ServiceBroker } from "moleculer";
import { Sequelize } from "sequelize";
import { useTestEnv } from "../../support/env";

const PG = "postgres://postgres@127.0.0.1:5432/postgres";

describe.each([
	["SQLite", {}],
	["PostgreSQL", { DATABASE_URL: PG, DB_NAME_PREFIX: `t_${Math.random().toString(36).slice(2, 8)}_` }],
])("warehouse and payments on %s", (_db, env: Record<string, string>) => {
	jest.setTimeout(120_000);
	let broker: ServiceBroker;
	const ops = { meta: { user: { id: "a", typ: "admin", roles: ["ops"] } } };

	beforeAll(async () => {
		useTestEnv(env);
		const { createBroker } = require("../../../lib/broker") as typeof import("../../../lib/broker");
		broker = createBroker(["warehouse", "payments"], { logger: false, namespace: `wp-${Math.random()}` });
		await broker.start();
		await broker.call("warehouse.seedDemo");
		await broker.call("warehouse.setOnHand", { sku: "RACE-001", warehouseId: "wh-east", onHand: 30 }, ops);
		await broker.call("warehouse.setOnHand", { sku: "RACE-001", warehouseId: "wh-west", onHand: 20 }, ops);
	});

	afterAll(async () => {
		await broker?.stop();
		if (env.DB_NAME_PREFIX) {
			const admin = new Sequelize(PG, { logging: false });
			const [rows] = await admin.query(`SELECT datname FROM pg_database WHERE datname LIKE '${env.DB_NAME_PREFIX}%'`);
			for (const r of rows as any[]) await admin.query(`DROP DATABASE IF EXISTS "${r.datname}" WITH (FORCE)`);
			await admin.close();
		}
	});

	it("reserves exactly the 50 units there are when 200 orders race for them", async () => {
		const results = await Promise.allSettled(
			Array.from({ length: 200 }, (_, i) => broker.call("warehouse.reserve", { orderId: `race-${i}`, lines: [{ sku: "RACE-001", quantity: 1 }], idempotencyKey: `race-${i}` })),
		);
		const ok = results.filter(r => r.status === "fulfilled");
		const failed = results.filter(r => r.status === "rejected") as PromiseRejectedResult[];
		expect(ok).toHaveLength(50);
		expect(failed.every(f => f.reason.type === "OUT_OF_STOCK")).toBe(true);
		const stock: any = await broker.call("warehouse.stock", { sku: "RACE-001" }, ops);
		expect(stock.warehouses).toEqual([
			{ warehouseId: "wh-east", onHand: 30, reserved: 30, available: 0 },
			{ warehouseId: "wh-west", onHand: 20, reserved: 20, available: 0 },
		]);
	});

	it("takes all lines or none", async () => {
		const before: any = await broker.call("warehouse.availabilityMany", { skus: ["HP-1001", "RACE-001"] });
		await expect(broker.call("warehouse.reserve", { orderId: "mixed", lines: [{ sku: "HP-1001", quantity: 1 }, { sku: "RACE-001", quantity: 1 }], idempotencyKey: "mixed" })).rejects.toMatchObject({ code: 409, type: "OUT_OF_STOCK" });
		expect(await broker.call("warehouse.availabilityMany", { skus: ["HP-1001", "RACE-001"] })).toEqual(before);
	});

	it("answers a repeated reservation with the first one, and releases and commits once", async () => {
		const first: any = await broker.call("warehouse.reserve", { orderId: "o-1", lines: [{ sku: "HP-1002", quantity: 2 }], idempotencyKey: "k-1" });
		const again: any = await broker.call("warehouse.reserve", { orderId: "o-1", lines: [{ sku: "HP-1002", quantity: 2 }], idempotencyKey: "k-1" });
		expect(again).toEqual(first);
		const avail: any = await broker.call("warehouse.availability", { sku: "HP-1002" });
		await broker.call("warehouse.commit", { orderId: "o-1", idempotencyKey: "c-1" });
		await broker.call("warehouse.commit", { orderId: "o-1", idempotencyKey: "c-1" });
		expect(await broker.call("warehouse.availability", { sku: "HP-1002" })).toEqual(avail);
		await broker.call("warehouse.release", { orderId: "o-1", idempotencyKey: "r-1" });
		await broker.call("warehouse.release", { orderId: "o-1", idempotencyKey: "r-1b" });
		expect(await broker.call("warehouse.availability", { sku: "HP-1002" })).toEqual({ inStock: true, quantity: avail.quantity + 2 });
	});

	it("never lets on-hand fall below what is reserved", async () => {
		await expect(broker.call("warehouse.setOnHand", { sku: "RACE-001", warehouseId: "wh-east", onHand: 10 }, ops)).rejects.toMatchObject({ code: 409, type: "BELOW_RESERVED" });
		await expect(broker.call("warehouse.setOnHand", { sku: "RACE-001", warehouseId: "wh-nowhere", onHand: 10 }, ops)).rejects.toMatchObject({ code: 404 });
		await expect(broker.call("warehouse.setOnHand", { sku: "RACE-001", warehouseId: "wh-east", onHand: -1 }, ops)).rejects.toMatchObject({ code: 422 });
	});

	it("authorizes, captures and refunds once per key, never more than captured", async () => {
		const auth = { orderId: "p-1", amount: { amount: 5000, currency: "USD" }, paymentToken: "tok_visa", idempotencyKey: "p-1-auth" };
		const [a1, a2] = await Promise.all([broker.call("payments.authorize", auth), broker.call("payments.authorize", auth)]);
		expect(a2).toEqual(a1);
		await broker.call("payments.capture", { orderId: "p-1", idempotencyKey: "p-1-cap" });
		const refunds = await Promise.allSettled(Array.from({ length: 5 }, (_, i) => broker.call("payments.refund", { orderId: "p-1", amount: 2000, idempotencyKey: `p-1-ref-${i}` })));
		const payments: any[] = await broker.call("payments.byOrder", { orderId: "p-1" });
		expect(payments).toHaveLength(1);
		expect(payments[0].captured).toBe(5000);
		expect(payments[0].refunded).toBeLessThanOrEqual(5000);
		expect(payments[0].refunded % 2000).toBe(0);
		expect(refunds.filter(r => r.status === "fulfilled").length * 2000).toBe(payments[0].refunded);
	});

	it("declines by token and remembers the decline for the same key", async () => {
		const p = { orderId: "p-2", amount: { amount: 100, currency: "USD" }, paymentToken: "tok_insufficient_funds", idempotencyKey: "p-2" };
		await expect(broker.call("payments.authorize", p)).rejects.toMatchObject({ code: 402, type: "INSUFFICIENT_FUNDS" });
		await expect(broker.call("payments.authorize", p)).rejects.toMatchObject({ code: 402, type: "INSUFFICIENT_FUNDS" });
		expect(await broker.call("payments.byOrder", { orderId: "p-2" })).toEqual([expect.objectContaining({ status: "FAILED" })]);
		await expect(broker.call("payments.authorize", { ...p, orderId: "p-3", idempotencyKey: "p-3", paymentToken: "tok_bogus" })).rejects.toMatchObject({ code: 422, type: "INVALID_PAYMENT_TOKEN" });
	});

	it("voids an open authorisation and refuses to capture it afterwards", async () => {
		await broker.call("payments.authorize", { orderId: "p-4", amount: { amount: 100, currency: "USD" }, paymentToken: "tok_capture_fails", idempotencyKey: "p-4" });
		await expect(broker.call("payments.capture", { orderId: "p-4", idempotencyKey: "p-4-cap" })).rejects.toMatchObject({ code: 402, type: "CAPTURE_FAILED" });
		expect(await broker.call("payments.void", { orderId: "p-4", idempotencyKey: "p-4-void" })).toEqual({ voided: 1 });
		expect(await broker.call("payments.void", { orderId: "p-4", idempotencyKey: "p-4-void-2" })).toEqual({ voided: 0 });
		await expect(broker.call("payments.capture", { orderId: "p-4", idempotencyKey: "p-4-cap-2" })).rejects.toMatchObject({ code: 409 });
	});
});
