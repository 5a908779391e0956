/**
 * The embedded default (no transporter): events recorded in a transaction are applied in process
 * by every consumer group once, failures are retried with backoff, then dead-lettered and
 * replayable through `$events`.
 */
import { useTestEnv } from "../../support/env";

useTestEnv({ NAMESPACE: `ev-emb-${process.pid}`, EVENTS_MAX_ATTEMPTS: "3", EVENTS_RETRY_BASE_MS: "50", EVENTS_RETRY_MAX_MS: "200", EVENTS_POLL_MS: "100" });

import { ServiceBroker } from "moleculer";
import { resetConfig } from "../../../config";
import { pruneInbox } from "../../../mixins/consumer.mixin";
import { brokerOptions } from "../../../moleculer.config";
import { PG_URL, consumerService, dropDatabases, effects, pgPrefix, producerService, statementConsumerService, tallies, waitFor } from "./helpers";

const prefix = pgPrefix("evemb");

describe.each([
	["SQLite", {}],
	["PostgreSQL", { DATABASE_URL: PG_URL, DB_NAME_PREFIX: prefix }],
])("events in process (embedded default) on %s", (_dialect, env: Record<string, string>) => {
	let broker: ServiceBroker;

	beforeAll(async () => {
		delete process.env.TRANSPORTER;
		delete process.env.DATABASE_URL;
		Object.assign(process.env, env);
		resetConfig();
		broker = new ServiceBroker(brokerOptions({ logger: false, nodeID: "emb-1" }));
		broker.createService(producerService());
		broker.createService(consumerService());
		broker.createService(consumerService("evmailer"));
		broker.createService(statementConsumerService("evstmt"));
		await broker.start();
	});

	afterAll(async () => {
		await broker.stop();
		if (env.DATABASE_URL) await dropDatabases(prefix);
	});
	beforeEach(() => effects.reset());

	it("applies a committed event once in every consumer group and records its envelope", async () => {
		expect((broker.getLocalService("evshop") as any).sequelize.getDialect()).toBe(env.DATABASE_URL ? "postgres" : "sqlite");
		const event: any = await broker.call("evshop.place", { orderId: "o-1" });
		expect(event).toEqual({ ...event, orderId: "o-1", eventId: expect.stringMatching(/^[0-9a-f-]{36}$/), occurredAt: expect.any(String) });
		await waitFor(async () => (await tallies(broker))["o-1"] === 1 && (await tallies(broker, "evmailer"))["o-1"] === 1);
		const status: any = await broker.call("$events.status");
		expect(status.mode).toBe("embedded");
		await waitFor(async () => ((await broker.call("$events.status")) as any).outboxes.evshop.PENDING === 0);
	});

	it("applies an event once in a group whose handler is one statement, however often and however concurrently it is delivered", async () => {
		const event: any = await broker.call("evshop.place", { orderId: "o-stmt" });
		await waitFor(async () => (await tallies(broker, "evstmt"))["o-stmt"] === 1);
		const group = (broker.getLocalService("evstmt") as any).$consumer;
		// Redeliveries, five at once and one after: the claim decides, nothing applies twice.
		const results = await Promise.all(Array.from({ length: 5 }, () => group.consume("orders.order.confirmed", event)));
		expect(results).toEqual(Array(5).fill("duplicate"));
		expect(await group.consume("orders.order.confirmed", event)).toBe("duplicate");
		expect((await tallies(broker, "evstmt"))["o-stmt"]).toBe(1);
		expect(effects.appliedBy.get("evstmt/o-stmt")).toEqual(["1"]);
		// A new event for the same order applies (the upsert counts it).
		const again = { ...event, eventId: "00000000-0000-4000-8000-000000000001" };
		expect(await group.consume("orders.order.confirmed", again)).toBe("applied");
		expect((await tallies(broker, "evstmt"))["o-stmt"]).toBe(2);
		// A new event delivered five times at once: one applies, the others find its claim.
		const racing = { ...event, eventId: "00000000-0000-4000-8000-000000000002" };
		const raced = await Promise.all(Array.from({ length: 5 }, () => group.consume("orders.order.confirmed", racing)));
		expect([...raced].sort()).toEqual(["applied", "duplicate", "duplicate", "duplicate", "duplicate"]);
		expect((await tallies(broker, "evstmt"))["o-stmt"]).toBe(3);
	});

	it("never delivers the event of a transaction that rolled back", async () => {
		await broker.call("evshop.place", { orderId: "o-rb", rollback: true });
		await broker.call("evshop.place", { orderId: "o-after-rb" });
		await waitFor(async () => (await tallies(broker))["o-after-rb"] === 1);
		expect((await tallies(broker))["o-rb"]).toBeUndefined();
	});

	it("delivers again, with backoff, an event whose handler failed, and applies it once", async () => {
		effects.failures.set("evledger/o-retry", 2);
		const started = Date.now();
		await broker.call("evshop.place", { orderId: "o-retry" });
		await waitFor(async () => (await tallies(broker))["o-retry"] === 1);
		// Two failures: waits of ~50 and ~100 ms (±20 %) before the third attempt.
		expect(Date.now() - started).toBeGreaterThanOrEqual(110);
		expect(effects.failures.get("evledger/o-retry")).toBe(0);
		// The group that succeeded the first time did not apply it again on the retries.
		expect((await tallies(broker, "evmailer"))["o-retry"]).toBe(1);
		expect(effects.appliedBy.get("o-retry")).toEqual(["emb-1", "emb-1"]);
	});

	it("dead-letters an event after the last attempt, and an operator replays it through $events", async () => {
		effects.failures.set("evledger/o-dead", 99);
		const event: any = await broker.call("evshop.place", { orderId: "o-dead" });
		const dead: any = await waitFor(async () => {
			const list: any = await broker.call("$events.deadLetters", {});
			return list.items.find((d: any) => d.eventId === event.eventId);
		});
		expect(dead).toEqual({
			id: `outbox:evshop:${event.eventId}`,
			event: "orders.order.confirmed",
			eventId: event.eventId,
			group: "evledger",
			attempts: 3,
			error: expect.stringContaining("handler fails for o-dead"),
			deadAt: expect.any(String),
			payload: event,
		});
		expect(effects.failures.get("evledger/o-dead")).toBe(96);
		expect((await tallies(broker))["o-dead"]).toBeUndefined();
		// A dead letter is not retried on its own.
		await new Promise(r => setTimeout(r, 300));
		expect(effects.failures.get("evledger/o-dead")).toBe(96);

		effects.failures.delete("evledger/o-dead");
		expect(await broker.call("$events.replay", { id: dead.id })).toEqual({ replayed: 1, ids: [dead.id] });
		await waitFor(async () => (await tallies(broker))["o-dead"] === 1);
		expect(((await broker.call("$events.deadLetters", {})) as any).items).toEqual([]);
		await expect(broker.call("$events.replay", { id: dead.id })).rejects.toMatchObject({ code: 404, type: "DEAD_LETTER_NOT_FOUND" });
		await expect(broker.call("$events.replay", {})).rejects.toMatchObject({ code: 422 });
	});

	it("discards a dead letter an operator decided against", async () => {
		effects.failures.set("evledger/o-discard", 99);
		const event: any = await broker.call("evshop.place", { orderId: "o-discard" });
		const id = `outbox:evshop:${event.eventId}`;
		await waitFor(async () => ((await broker.call("$events.deadLetters", { group: "evledger" })) as any).items.some((d: any) => d.id === id));
		expect(await broker.call("$events.discard", { id })).toEqual({ discarded: 1 });
		expect(((await broker.call("$events.deadLetters", {})) as any).items).toEqual([]);
		await expect(broker.call("$events.discard", { id })).rejects.toMatchObject({ code: 404 });
	});

	it("does not apply an event twice when the relay publishes it again", async () => {
		const event: any = await broker.call("evshop.place", { orderId: "o-dup" });
		await waitFor(async () => (await tallies(broker))["o-dup"] === 1);
		// As if the relay had died after delivering but before marking the row PUBLISHED.
		const svc: any = broker.getLocalService("evshop");
		for (let i = 0; i < 2; i++) {
			await svc.sequelize.query("UPDATE outbox_events SET status = 'PENDING', next_attempt_at = :now WHERE id = :id", { replacements: { now: new Date(0), id: event.eventId } });
			svc.$outbox.kick();
			await waitFor(async () => ((await svc.sequelize.query("SELECT status FROM outbox_events WHERE id = :id", { replacements: { id: event.eventId }, plain: true })) as any).status === "PUBLISHED");
		}
		expect((await tallies(broker))["o-dup"]).toBe(1);
		expect((await tallies(broker, "evmailer"))["o-dup"]).toBe(1);
	});

	it("deletes published rows once they are older than the retention period", async () => {
		await broker.call("evshop.place", { orderId: "o-old" });
		await waitFor(async () => (await tallies(broker))["o-old"] === 1);
		const svc: any = broker.getLocalService("evshop");
		await svc.$outbox.idle();
		const counts = await svc.$outbox.counts();
		expect(counts.PUBLISHED).toBeGreaterThan(0);
		expect(await svc.$outbox.cleanup(new Date())).toBe(0);
		const removed = await svc.$outbox.cleanup(new Date(Date.now() + 169 * 3_600_000));
		expect(removed).toBe(counts.PUBLISHED);
		expect((await svc.$outbox.counts()).PUBLISHED).toBe(0);
	});

	it("forgets inbox records only after twice the retention period", async () => {
		await broker.call("evshop.place", { orderId: "o-inbox" });
		await waitFor(async () => (await tallies(broker))["o-inbox"] === 1);
		const inbox = (broker.getLocalService("evledger") as any).$inbox;
		const before = await inbox.count();
		expect(before).toBeGreaterThan(0);
		expect(await pruneInbox(inbox, new Date(Date.now() + 300 * 3_600_000))).toBe(0);
		expect(await pruneInbox(inbox, new Date(Date.now() + 337 * 3_600_000))).toBe(before);
	});
});
