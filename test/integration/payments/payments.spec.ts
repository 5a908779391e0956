/**
 * Payments against their real database, SQLite and PostgreSQL: every operation idempotent on its
 * key (also concurrently, also when the first call died between the provider and its commit), a
 * compensation that overtook its step keeps it from taking effect, refunds never beyond the
 * capture under concurrency, declines as client errors, events in the outbox.
 */
import type { ServiceBroker } from "moleculer";
import { QueryTypes, Sequelize } from "sequelize";
import { resetConfig } from "../../../config";
import { useTestEnv } from "../../support/env";

const PG = "postgres://postgres@127.0.0.1:5432/postgres";
const usd = (amount: number) => ({ amount, currency: "USD" });
let n = 0;
const fresh = (prefix: string) => `${prefix}-${++n}-${Math.random().toString(36).slice(2, 8)}`;

describe.each([
	["SQLite", {}],
	["PostgreSQL", { DATABASE_URL: PG, DB_NAME_PREFIX: `t_${Math.random().toString(36).slice(2, 8)}_` }],
])("payments on %s", (_db, env: Record<string, string>) => {
	jest.setTimeout(60_000);
	let broker: ServiceBroker;
	let db: Sequelize;
	const support = { meta: { user: { id: "s", typ: "admin", roles: ["support"] } } };

	const query = (sql: string, replacements: Record<string, unknown> = {}) => db.query(sql, { type: QueryTypes.SELECT, replacements }) as Promise<any[]>;
	const events = async (orderId: string) =>
		(await query("SELECT name, payload FROM outbox_events ORDER BY occurred_at, id")).map(e => ({ name: e.name, payload: typeof e.payload === "string" ? JSON.parse(e.payload) : e.payload })).filter(e => e.payload.orderId === orderId).map(e => e.name);
	const byOrder = (orderId: string) => broker.call("payments.byOrder", { orderId }) as Promise<any[]>;
	const withFault = async <T>(fault: string, fn: () => Promise<T>) => {
		process.env.TEST_FAULTS = fault;
		resetConfig();
		try {
			return await fn();
		} finally {
			process.env.TEST_FAULTS = "";
			resetConfig();
		}
	};
	const authorize = (orderId: string, amount = 5000, paymentToken = "tok_visa", idempotencyKey = `${orderId}:authorize`) =>
		broker.call("payments.authorize", { orderId, amount: usd(amount), paymentToken, idempotencyKey }) as Promise<any>;

	beforeAll(async () => {
		useTestEnv(env);
		const { createBroker } = require("../../../lib/broker") as typeof import("../../../lib/broker");
		broker = createBroker(["payments"], { logger: false, namespace: `pay-${Math.random()}` });
		await broker.start();
		db = (broker.getLocalService("payments") as any).sequelize;
	});

	afterAll(async () => {
		await broker?.stop();
		if (env.DB_NAME_PREFIX) {
			const admin = new Sequelize(PG, { logging: false });
			const rows = await admin.query(`SELECT datname FROM pg_database WHERE datname LIKE '${env.DB_NAME_PREFIX}%'`, { type: QueryTypes.SELECT });
			for (const r of rows as any[]) await admin.query(`DROP DATABASE IF EXISTS "${r.datname}" WITH (FORCE)`);
			await admin.close();
		}
	});

	it("authorizes once per key: concurrent calls with one key share one payment, one event", async () => {
		const orderId = fresh("auth");
		const answers = await Promise.all(Array.from({ length: 10 }, () => authorize(orderId)));
		expect(answers).toEqual(Array(10).fill({ paymentId: answers[0].paymentId, status: "AUTHORIZED", providerRef: expect.any(String) }));
		expect(await byOrder(orderId)).toEqual([{ id: answers[0].paymentId, status: "AUTHORIZED", amount: 5000, captured: 0, refunded: 0 }]);
		expect(await events(orderId)).toEqual(["payments.payment.authorized"]);
	});

	it("authorizes once when the first call died between the provider and its commit: the retry gets the same authorisation", async () => {
		const orderId = fresh("lost");
		await withFault("fail:payments.authorize.afterProvider", () => expect(authorize(orderId)).rejects.toThrow("Injected fault at payments.authorize.afterProvider"));
		// Nothing of the first call was committed, and no record blocks the retry.
		expect(await byOrder(orderId)).toEqual([]);
		expect(await query("SELECT key FROM idempotency_keys WHERE key = :key", { key: `${orderId}:authorize` })).toEqual([]);
		const [a, b] = await Promise.all([authorize(orderId), authorize(orderId)]);
		expect(b).toEqual(a);
		expect(await byOrder(orderId)).toEqual([{ id: a.paymentId, status: "AUTHORIZED", amount: 5000, captured: 0, refunded: 0 }]);
		// The provider honoured the key: the hold recorded is the one the first call made.
		const [row] = await query("SELECT provider_ref FROM payments WHERE order_id = :orderId", { orderId });
		expect(row.provider_ref).toMatch(/^sim:approve:[0-9a-f]{32}$/);
		expect(await events(orderId)).toEqual(["payments.payment.authorized"]);
		expect(await authorize(orderId)).toEqual(a);
	});

	it("refuses an authorisation that arrives after its void (the void fenced its key), and records nothing", async () => {
		const orderId = fresh("late");
		expect(await broker.call("payments.void", { orderId, idempotencyKey: `${orderId}:void`, stepKey: `${orderId}:authorize` })).toEqual({ voided: 0 });
		await expect(authorize(orderId)).rejects.toMatchObject({ code: 409, type: "STEP_COMPENSATED" });
		await expect(authorize(orderId, 5000, "tok_slow")).rejects.toMatchObject({ code: 409, type: "STEP_COMPENSATED" });
		expect(await byOrder(orderId)).toEqual([]);
		expect(await events(orderId)).toEqual([]);
	});

	it("voids what an authorisation committed just before its void, when they race", async () => {
		for (let i = 0; i < 5; i++) {
			const orderId = fresh("race-void");
			const [auth, voided] = await Promise.allSettled([authorize(orderId), broker.call("payments.void", { orderId, idempotencyKey: `${orderId}:void`, stepKey: `${orderId}:authorize` })]);
			expect(voided.status).toBe("fulfilled");
			const pays = await byOrder(orderId);
			// Either the authorisation lost to the fence (nothing), or it won and the void voided it: never left open.
			if (auth.status === "rejected") expect(pays).toEqual([]);
			else expect(pays).toEqual([expect.objectContaining({ status: "VOIDED" })]);
		}
	});

	it("refuses a capture that arrives after its refund fenced it, leaving the authorisation for the void", async () => {
		const orderId = fresh("late-cap");
		const { paymentId } = await authorize(orderId);
		expect(await broker.call("payments.refund", { orderId, idempotencyKey: `${orderId}:refund`, stepKey: `${orderId}:capture` })).toEqual({ refunded: 0 });
		await expect(broker.call("payments.capture", { orderId, idempotencyKey: `${orderId}:capture` })).rejects.toMatchObject({ code: 409, type: "STEP_COMPENSATED" });
		expect(await byOrder(orderId)).toEqual([{ id: paymentId, status: "AUTHORIZED", amount: 5000, captured: 0, refunded: 0 }]);
		expect(await broker.call("payments.void", { orderId, idempotencyKey: `${orderId}:void` })).toEqual({ voided: 1 });
	});

	it("refuses a key reused for another request with 422 IDEMPOTENCY_KEY_REUSED", async () => {
		const orderId = fresh("reuse");
		await authorize(orderId, 5000);
		await expect(authorize(orderId, 6000)).rejects.toMatchObject({ code: 422, type: "IDEMPOTENCY_KEY_REUSED" });
		// A key names one operation of the service: not a capture as well.
		await expect(broker.call("payments.capture", { orderId, idempotencyKey: `${orderId}:authorize` })).rejects.toMatchObject({ code: 422, type: "IDEMPOTENCY_KEY_REUSED" });
		expect(await byOrder(orderId)).toEqual([expect.objectContaining({ amount: 5000, status: "AUTHORIZED" })]);
	});

	it("captures once per key, concurrently too, and a later capture under another key changes nothing", async () => {
		const orderId = fresh("cap");
		const { paymentId } = await authorize(orderId);
		const capture = (idempotencyKey: string) => broker.call("payments.capture", { orderId, idempotencyKey });
		const answers = await Promise.all(Array.from({ length: 8 }, () => capture(`${orderId}:capture`)));
		expect(answers).toEqual(Array(8).fill({ paymentId, status: "CAPTURED" }));
		expect(await capture(`${orderId}:capture`)).toEqual({ paymentId, status: "CAPTURED" });
		expect(await capture(`${orderId}:capture-again`)).toEqual({ paymentId, status: "CAPTURED" });
		expect(await byOrder(orderId)).toEqual([{ id: paymentId, status: "CAPTURED", amount: 5000, captured: 5000, refunded: 0 }]);
		expect(await events(orderId)).toEqual(["payments.payment.authorized", "payments.payment.captured"]);
	});

	it("captures with what authorize answered (no read first), and falls back to reading when that cannot apply", async () => {
		const capture = (orderId: string, idempotencyKey: string, payment?: unknown) => broker.call("payments.capture", { orderId, idempotencyKey, ...(payment ? { payment } : {}) });
		// The saga's path: the hint, repeated under the key (the stored answer), and under another key.
		const orderId = fresh("hint");
		const { paymentId, providerRef } = await authorize(orderId);
		const hint = { id: paymentId, providerRef, amount: usd(5000) };
		expect(await Promise.all(Array.from({ length: 4 }, () => capture(orderId, `${orderId}:capture`, hint)))).toEqual(Array(4).fill({ paymentId, status: "CAPTURED" }));
		expect(await capture(orderId, `${orderId}:capture`)).toEqual({ paymentId, status: "CAPTURED" });
		expect(await capture(orderId, `${orderId}:capture-again`, hint)).toEqual({ paymentId, status: "CAPTURED" });
		expect(await byOrder(orderId)).toEqual([{ id: paymentId, status: "CAPTURED", amount: 5000, captured: 5000, refunded: 0 }]);
		expect(await events(orderId)).toEqual(["payments.payment.authorized", "payments.payment.captured"]);
		// A payment voided meanwhile: the conditional update refuses, as without the hint.
		const voided = fresh("hint-void");
		const a = await authorize(voided);
		await broker.call("payments.void", { orderId: voided, idempotencyKey: `${voided}:void` });
		await expect(capture(voided, `${voided}:capture`, { id: a.paymentId, providerRef: a.providerRef, amount: usd(5000) })).rejects.toMatchObject({ code: 409, type: "ILLEGAL_PAYMENT_TRANSITION" });
		expect(await byOrder(voided)).toEqual([expect.objectContaining({ status: "VOIDED", captured: 0 })]);
		// A hint that is not the order's payment (another order's, another amount) captures only the order's own.
		const other = fresh("hint-other");
		const b = await authorize(other, 700);
		await expect(capture(other, `${other}:capture`, { id: paymentId, providerRef, amount: usd(5000) })).resolves.toEqual({ paymentId: b.paymentId, status: "CAPTURED" });
		const third = fresh("hint-amount");
		const c = await authorize(third, 900);
		await expect(capture(third, `${third}:capture`, { id: c.paymentId, providerRef: c.providerRef, amount: usd(901) })).resolves.toEqual({ paymentId: c.paymentId, status: "CAPTURED" });
		expect(await byOrder(third)).toEqual([{ id: c.paymentId, status: "CAPTURED", amount: 900, captured: 900, refunded: 0 }]);
		expect(await events(third)).toEqual(["payments.payment.authorized", "payments.payment.captured"]);
		// A refused capture at the provider stays 402 with the hint; a malformed hint is a 422.
		const fails = fresh("hint-capfail");
		const d = await authorize(fails, 100, "tok_capture_fails");
		await expect(capture(fails, `${fails}:capture`, { id: d.paymentId, providerRef: d.providerRef, amount: usd(100) })).rejects.toMatchObject({ code: 402, type: "CAPTURE_FAILED" });
		await expect(capture(fails, fresh("k"), { id: d.paymentId, amount: usd(100) })).rejects.toMatchObject({ code: 422 });
		expect(await byOrder(fails)).toEqual([expect.objectContaining({ status: "AUTHORIZED", captured: 0 })]);
	});

	it("voids once per key, treats nothing to void as done, and refuses to capture a voided payment", async () => {
		const orderId = fresh("void");
		const { paymentId } = await authorize(orderId);
		const voidIt = (idempotencyKey: string) => broker.call("payments.void", { orderId, idempotencyKey });
		expect(await Promise.all(Array.from({ length: 5 }, () => voidIt(`${orderId}:void`)))).toEqual(Array(5).fill({ voided: 1 }));
		expect(await voidIt(`${orderId}:void`)).toEqual({ voided: 1 });
		expect(await voidIt(`${orderId}:void-2`)).toEqual({ voided: 0 });
		expect(await broker.call("payments.void", { orderId: fresh("nothing"), idempotencyKey: fresh("k") })).toEqual({ voided: 0 });
		await expect(broker.call("payments.capture", { orderId, idempotencyKey: `${orderId}:capture` })).rejects.toMatchObject({ code: 409, type: "ILLEGAL_PAYMENT_TRANSITION" });
		expect(await byOrder(orderId)).toEqual([{ id: paymentId, status: "VOIDED", amount: 5000, captured: 0, refunded: 0 }]);
		expect(await events(orderId)).toEqual(["payments.payment.authorized", "payments.payment.voided"]);
	});

	it("refunds once per key, and the rest when no amount is given", async () => {
		const orderId = fresh("ref");
		await authorize(orderId);
		await broker.call("payments.capture", { orderId, idempotencyKey: `${orderId}:capture` });
		const refund = (idempotencyKey: string, amount?: number) => broker.call("payments.refund", { orderId, idempotencyKey, ...(amount ? { amount } : {}) });
		expect(await Promise.all(Array.from({ length: 5 }, () => refund(`${orderId}:r1`, 1500)))).toEqual(Array(5).fill({ refunded: 1500 }));
		expect(await refund(`${orderId}:r1`, 1500)).toEqual({ refunded: 1500 });
		expect((await byOrder(orderId))[0]).toMatchObject({ status: "PARTIALLY_REFUNDED", captured: 5000, refunded: 1500 });
		expect(await refund(`${orderId}:rest`)).toEqual({ refunded: 3500 });
		expect(await refund(`${orderId}:rest-again`)).toEqual({ refunded: 0 });
		await expect(refund(`${orderId}:more`, 1)).rejects.toMatchObject({ code: 409, type: "REFUND_EXCEEDS_CAPTURE" });
		expect((await byOrder(orderId))[0]).toMatchObject({ status: "REFUNDED", captured: 5000, refunded: 5000 });
		expect(await events(orderId)).toEqual(["payments.payment.authorized", "payments.payment.captured", "payments.payment.refunded", "payments.payment.refunded"]);
	});

	it("never refunds more than was captured, however many refunds race", async () => {
		const orderId = fresh("race");
		const { paymentId } = await authorize(orderId, 5000);
		await broker.call("payments.capture", { orderId, idempotencyKey: `${orderId}:capture` });
		const results = await Promise.allSettled([
			...Array.from({ length: 10 }, (_, i) => broker.call("payments.refund", { orderId, amount: 1500, idempotencyKey: `${orderId}:r${i}` })),
			...Array.from({ length: 10 }, () => broker.call("payments.adminRefund", { id: paymentId, amount: 1500 }, support)),
		]);
		const ok = results.filter(r => r.status === "fulfilled");
		const refused = results.filter(r => r.status === "rejected") as PromiseRejectedResult[];
		expect(ok).toHaveLength(3);
		expect(refused.map(r => [r.reason.code, r.reason.type])).toEqual(Array(17).fill([409, "REFUND_EXCEEDS_CAPTURE"]));
		expect(await byOrder(orderId)).toEqual([{ id: paymentId, status: "PARTIALLY_REFUNDED", amount: 5000, captured: 5000, refunded: 4500 }]);
		expect((await events(orderId)).filter(e => e === "payments.payment.refunded")).toHaveLength(3);
	});

	it("declines as a 402 client error, keeps the FAILED payment once, and answers the key with the same decline", async () => {
		for (const [token, type] of [["tok_declined", "PAYMENT_DECLINED"], ["tok_insufficient_funds", "INSUFFICIENT_FUNDS"]]) {
			const orderId = fresh("decline");
			await expect(authorize(orderId, 100, token)).rejects.toMatchObject({ code: 402, type });
			await expect(authorize(orderId, 100, token)).rejects.toMatchObject({ code: 402, type });
			await expect(authorize(orderId, 100, token)).rejects.toMatchObject({ code: 402, type });
			expect(await byOrder(orderId)).toEqual([expect.objectContaining({ status: "FAILED", amount: 100, captured: 0 })]);
			expect(await events(orderId)).toEqual(["payments.payment.failed"]);
			await expect(broker.call("payments.capture", { orderId, idempotencyKey: `${orderId}:capture` })).rejects.toMatchObject({ code: 409, type: "NO_OPEN_PAYMENT" });
		}
	});

	it("never opens the circuit breaker for declines", async () => {
		for (let i = 0; i < 25; i++) await expect(authorize(fresh("cb"), 100, "tok_declined")).rejects.toMatchObject({ code: 402 });
		await expect(authorize(fresh("cb"), 100, "tok_visa")).resolves.toMatchObject({ status: "AUTHORIZED" });
	});

	it("refuses an unknown token with 422 and writes no payment", async () => {
		const orderId = fresh("bogus");
		await expect(authorize(orderId, 100, "tok_bogus")).rejects.toMatchObject({ code: 422, type: "INVALID_PAYMENT_TOKEN" });
		expect(await byOrder(orderId)).toEqual([]);
		expect(await events(orderId)).toEqual([]);
		await expect(broker.call("payments.authorize", { orderId, amount: usd(0), paymentToken: "tok_visa", idempotencyKey: fresh("k") })).rejects.toMatchObject({ code: 422 });
		await expect(broker.call("payments.authorize", { orderId, amount: { amount: 100, currency: "EUR" }, paymentToken: "tok_visa", idempotencyKey: fresh("k") })).rejects.toMatchObject({ code: 422 });
		expect(await byOrder(orderId)).toEqual([]);
	});

	it("keeps the authorisation open when the capture fails, for the saga to void", async () => {
		const orderId = fresh("capfail");
		const { paymentId } = await authorize(orderId, 100, "tok_capture_fails");
		await expect(broker.call("payments.capture", { orderId, idempotencyKey: `${orderId}:capture` })).rejects.toMatchObject({ code: 402, type: "CAPTURE_FAILED" });
		expect(await byOrder(orderId)).toEqual([{ id: paymentId, status: "AUTHORIZED", amount: 100, captured: 0, refunded: 0 }]);
		expect(await broker.call("payments.void", { orderId, idempotencyKey: `${orderId}:void` })).toEqual({ voided: 1 });
		expect(await broker.call("payments.refund", { orderId, idempotencyKey: `${orderId}:refund` })).toEqual({ refunded: 0 });
	});

	it("answers tok_slow after 2 s, once for concurrent calls with its key", async () => {
		const orderId = fresh("slow");
		const t0 = Date.now();
		const [a, b] = await Promise.all([authorize(orderId, 100, "tok_slow"), authorize(orderId, 100, "tok_slow")]);
		expect(Date.now() - t0).toBeGreaterThanOrEqual(1990);
		expect(b).toEqual(a);
		expect(await byOrder(orderId)).toHaveLength(1);
	});
});
