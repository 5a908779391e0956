/**
 * Events over NATS JetStream (the shared server on 127.0.0.1:4222, a namespace of this file's
 * own) with the services' databases on PostgreSQL, as in a cluster: delivery to every consumer
 * group, exactly-once effects under duplicate publishing, retries then dead letters replayed
 * through the REPL command's action, and two replicas sharing one consumer group.
 */
import { useTestEnv } from "../../support/env";
import { PG_URL, pgPrefix } from "./helpers";

const NATS_URL = "nats://127.0.0.1:4222";
const NAMESPACE = `ev-js-${process.pid}-${Date.now().toString(36)}`;
const DB_PREFIX = pgPrefix("evjs");
useTestEnv({
	NAMESPACE,
	DATABASE_URL: PG_URL,
	DB_NAME_PREFIX: DB_PREFIX,
	TRANSPORTER: NATS_URL,
	EVENTS_MAX_ATTEMPTS: "3",
	EVENTS_RETRY_BASE_MS: "100",
	EVENTS_RETRY_MAX_MS: "400",
	EVENTS_POLL_MS: "200",
	EVENTS_ACK_WAIT_MS: "5000",
});

import { ServiceBroker } from "moleculer";
import { connect, headers } from "nats";
import { busNames } from "../../../lib/bus/policy";
import { eventCommands } from "../../../lib/repl/event-commands";
import { brokerOptions } from "../../../moleculer.config";
import { consumerService, deleteStreams, dropDatabases, effects, producerService, tallies, waitFor } from "./helpers";

const names = busNames(NAMESPACE);

function broker(nodeID: string): ServiceBroker {
	return new ServiceBroker(brokerOptions({ logger: false, nodeID: `${nodeID}-${process.pid}` }));
}

function command(name: string) {
	const cmd = eventCommands.find(c => c.command.split(" ")[0] === name);
	if (!cmd) throw new Error(`no REPL command ${name}`);
	return cmd;
}

describe("events over NATS JetStream", () => {
	const shop = broker("shop");
	const ledger = broker("ledger");
	const ledger2 = broker("ledger2");
	const mailer = broker("mailer");

	beforeAll(async () => {
		shop.createService(producerService());
		ledger.createService(consumerService());
		ledger2.createService(consumerService());
		mailer.createService(consumerService("evmailer"));
		await Promise.all([shop.start(), ledger.start(), ledger2.start(), mailer.start()]);
	});

	afterAll(async () => {
		await Promise.all([shop.stop(), ledger.stop(), ledger2.stop(), mailer.stop()]);
		await deleteStreams(NATS_URL, NAMESPACE);
		await dropDatabases(DB_PREFIX);
	});

	beforeEach(() => effects.reset());

	it("delivers a committed event once to every consumer group, through streams and consumers named after the namespace", async () => {
		const event: any = await shop.call("evshop.place", { orderId: "js-1" });
		await waitFor(async () => (await tallies(ledger))["js-1"] === 1 && (await tallies(mailer, "evmailer"))["js-1"] === 1);

		const nc = await connect({ servers: NATS_URL });
		try {
			const jsm = await nc.jetstreamManager();
			const stored = await jsm.streams.getMessage(names.stream, { last_by_subj: names.eventSubject("orders.order.confirmed") });
			expect(stored.header.get("Nats-Msg-Id")).toBe(event.eventId);
			expect(JSON.parse(new TextDecoder().decode(stored.data))).toEqual(event);
			const consumers = (await jsm.consumers.list(names.stream).next()).map(c => c.name).sort();
			const ns = NAMESPACE.replace(/[^A-Za-z0-9_-]/g, "_");
			expect(consumers).toEqual(
				[`${ns}__evledger__orders_order_confirmed`, `${ns}__evledger__replay`, `${ns}__evmailer__orders_order_confirmed`, `${ns}__evmailer__replay`].sort(),
			);
		} finally {
			await nc.close();
		}
	});

	it("applies each event once in each group although it was published one to three times", async () => {
		const events: any[] = [];
		for (let i = 0; i < 20; i++) events.push(await shop.call("evshop.place", { orderId: `dup-${i}` }));
		// Copies under other message ids get past JetStream's de-duplication: only the inboxes stop them.
		const nc = await connect({ servers: NATS_URL });
		try {
			const js = nc.jetstream();
			for (const [i, e] of events.entries()) {
				for (let copy = 1; copy <= i % 3; copy++) {
					const h = headers();
					h.set("Mc-Event", "orders.order.confirmed");
					await js.publish(names.eventSubject("orders.order.confirmed"), new TextEncoder().encode(JSON.stringify(e)), { msgID: `${e.eventId}-copy-${copy}`, headers: h });
				}
			}
		} finally {
			await nc.close();
		}
		// And the relay publishes every row again, as after a crash between publishing and marking.
		const svc: any = shop.getLocalService("evshop");
		await svc.sequelize.query("UPDATE outbox_events SET status = 'PENDING', next_attempt_at = :past", { replacements: { past: new Date(0) } });
		svc.$outbox.kick();
		await waitFor(async () => (await svc.$outbox.counts()).PENDING === 0);

		const want = Object.fromEntries(events.map(e => [e.orderId, 1]));
		await waitFor(async () => {
			const [l, m] = [await tallies(ledger), await tallies(mailer, "evmailer")];
			return events.every(e => l[e.orderId] === 1 && m[e.orderId] === 1);
		});
		// Let every copy arrive, then check that nothing was applied twice.
		await waitFor(async () => {
			const status: any = await shop.call("$events.status");
			return status.consumers.every((c: any) => c.pending === 0 && c.inFlight === 0);
		});
		const l = await tallies(ledger);
		const m = await tallies(mailer, "evmailer");
		expect(Object.fromEntries(events.map(e => [e.orderId, l[e.orderId]]))).toEqual(want);
		expect(Object.fromEntries(events.map(e => [e.orderId, m[e.orderId]]))).toEqual(want);
	});

	it("retries a failing handler with backoff, dead-letters it after the last attempt, and replays it from the REPL command", async () => {
		effects.failures.set("evledger/js-dead", 99);
		const started = Date.now();
		const event: any = await shop.call("evshop.place", { orderId: "js-dead" });
		const dead: any = await waitFor(async () => ((await shop.call("$events.deadLetters", { group: "evledger" })) as any).items.find((d: any) => d.eventId === event.eventId), 15_000);
		// Three deliveries, two backoff waits of ~100 and ~200 ms (±20 %) between them.
		expect(Date.now() - started).toBeGreaterThanOrEqual(240);
		expect(effects.failures.get("evledger/js-dead")).toBe(96);
		expect(dead).toEqual({
			id: expect.stringMatching(/^dlq:\d+$/),
			event: "orders.order.confirmed",
			eventId: event.eventId,
			group: "evledger",
			attempts: 3,
			error: "handler fails for js-dead (97 left)",
			deadAt: expect.any(String),
			payload: event,
		});
		// The other group was not affected.
		expect((await tallies(mailer, "evmailer"))["js-dead"]).toBe(1);
		expect((await tallies(ledger))["js-dead"]).toBeUndefined();

		// The REPL command lists it (through the action) ...
		const printed: string[] = [];
		const log = jest.spyOn(console, "log").mockImplementation((...a: unknown[]) => void printed.push(a.join(" ")));
		try {
			await command("events-dead").action(shop, { options: { group: "evledger" } }, {});
			expect(printed.join("\n")).toContain(dead.id);

			// ... and replays it once the cause is fixed.
			effects.failures.delete("evledger/js-dead");
			await command("events-replay").action(shop, { id: dead.id, options: {} }, {});
		} finally {
			log.mockRestore();
		}
		await waitFor(async () => (await tallies(ledger))["js-dead"] === 1);
		expect((await tallies(mailer, "evmailer"))["js-dead"]).toBe(1);
		expect(((await shop.call("$events.deadLetters", {})) as any).items).toEqual([]);
		await expect(shop.call("$events.replay", { id: dead.id })).rejects.toMatchObject({ code: 404 });
	});

	it("shares a consumer group between two replicas: each event is delivered to, and handled by, exactly one of them", async () => {
		// Every delivery to either replica, duplicates included (the inbox would hide them from the handler).
		const deliveries = new Map<string, string[]>();
		for (const b of [ledger, ledger2]) {
			const group = (b.getLocalService("evledger") as any).$consumer;
			const consume = group.consume;
			group.consume = (name: string, event: any) => {
				deliveries.set(event.orderId, [...(deliveries.get(event.orderId) ?? []), b.nodeID]);
				return consume(name, event);
			};
		}
		await shop.call("evshop.placeMany", { prefix: "rep-", count: 200 });
		const ids = Array.from({ length: 200 }, (_, i) => `rep-${i}`);
		await waitFor(async () => {
			const t = await tallies(ledger);
			return ids.every(id => t[id] === 1);
		}, 30_000, 100);
		expect(ids.filter(id => (deliveries.get(id) ?? []).length !== 1)).toEqual([]);
		const perReplica = new Map<string, number>();
		for (const id of ids) {
			const [node] = deliveries.get(id)!;
			perReplica.set(node, (perReplica.get(node) ?? 0) + 1);
		}
		expect([...perReplica.keys()].sort()).toEqual([ledger.nodeID, ledger2.nodeID].sort());
		// The handler committed on the replica the event was delivered to.
		expect(ids.filter(id => JSON.stringify((effects.appliedBy.get(id) ?? []).filter(n => n !== mailer.nodeID)) !== JSON.stringify(deliveries.get(id)))).toEqual([]);
	});
});
