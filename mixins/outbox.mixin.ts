/**
 * Transactional outbox (docs/EVENTS.md). A service records an event in the transaction of the
 * state change it reports:
 *
 *   mixins: [DbMixin({ ..., migrations: [...mine, ...outboxMigrations] }), OutboxMixin]
 *   await this.transaction(async t => { ...; await this.recordEvent(t, "catalog.product.created", snapshot); });
 *
 * or, in a command written as plain SQL (mixins/idempotency.mixin.ts), as one part of its write:
 *
 *   parts.push(this.outboxPart(p, "outbox", [["payments.payment.captured", payload]], ["cap"]));
 *
 * The event (payload + eventId + occurredAt) commits or rolls back with the change; after the
 * commit this process's relay publishes it from memory (JetStream in a cluster, the local
 * consumers in process), and a periodic pass publishes whatever a crash or an outage left behind.
 */
import { invalidateFor } from "../lib/cache";
import { randomUUID } from "node:crypto";
import type { Service, ServiceSchema } from "moleculer";
import type { Transaction } from "sequelize";
import { config } from "../config";
import type { Params, Part } from "../lib/db/sql";
import { busFor } from "../lib/bus";
import { ensureEventsService } from "../lib/bus/events-service";
import { placeAfterDatabase } from "../lib/bus/lifecycle";
import { type NewEvent, OUTBOX_TABLE, type OutboxRow, OutboxRelay, defineOutboxModel } from "../lib/bus/outbox-relay";
import { isValidEventName } from "../lib/bus/policy";
import type { DomainEvent, EventName, EventPayloads } from "../lib/events";
import { faultPoint } from "../lib/faults";
import type { DbMethods, Migration } from "./db.mixin";

export const outboxMigrations: Migration[] = [
	{
		name: "outbox-001-outbox-events",
		async up(qi, T) {
			await qi.createTable(OUTBOX_TABLE, {
				id: { type: T.STRING(36), primaryKey: true },
				name: { type: T.STRING(120), allowNull: false },
				payload: { type: T.JSON, allowNull: false },
				status: { type: T.STRING(16), allowNull: false },
				attempts: { type: T.INTEGER, allowNull: false, defaultValue: 0 },
				next_attempt_at: { type: T.DATE(3), allowNull: false },
				claim_token: { type: T.STRING(36), allowNull: true },
				last_error: { type: T.TEXT, allowNull: true },
				failed_group: { type: T.STRING(64), allowNull: true },
				occurred_at: { type: T.DATE(3), allowNull: false },
				published_at: { type: T.DATE(3), allowNull: true },
				dead_at: { type: T.DATE(3), allowNull: true },
			});
			await qi.addIndex(OUTBOX_TABLE, ["status", "next_attempt_at"], { name: "outbox_events_due" });
			await qi.addIndex(OUTBOX_TABLE, ["claim_token"], { name: "outbox_events_claim" });
			await qi.addIndex(OUTBOX_TABLE, ["status", "published_at"], { name: "outbox_events_published" });
		},
	},
];

export interface OutboxMethods {
	/** Records an event in `t`; returns it with its eventId and occurredAt. */
	recordEvent<N extends EventName>(t: Transaction, name: N, payload: EventPayloads[N]): Promise<DomainEvent<N>>;
	/** A write part recording events, applied only when the `requires` parts returned rows. */
	outboxPart(p: Params, name: string, events: OutboxEvent[], requires?: string[]): Part;
	/**
	 * A write part recording one event per row of `select`, which yields `id` (a new uuid) and
	 * `payload` (the whole event, its envelope included) — for payloads the write itself computes.
	 */
	outboxSelectPart(p: Params, name: string, event: EventName, select: string, requires?: string[]): Part;
	/** After a write's commit: publishes the rows of its parts named `outbox…`. */
	outboxWritten(rows: Record<string, any[]>): void;
	/** The envelope of a new event (its id and time), as `outboxPart` writes it. */
	envelope<N extends EventName>(name: N, payload: EventPayloads[N], now?: Date): NewEvent;
	/** Records many events in `t` with one INSERT (bulk writes such as a catalogue import); they share one occurredAt. */
	recordEvents(t: Transaction, events: RecordedEvent[]): Promise<void>;
}

/** An event to record: its name and payload (the envelope is added). */
export type OutboxEvent = { [N in EventName]: [N, EventPayloads[N]] }[EventName];

/** One event of a bulk write: its name and its payload, typed together. */
export type RecordedEvent = { [N in EventName]: { name: N; payload: EventPayloads[N] } }[EventName];

type OutboxService = Service & DbMethods & OutboxMethods & { $outbox?: OutboxRelay; relayFor(name: string): OutboxRelay };

/** Relay tuning that is not configuration: a batch per claim, a claim lease well above a batch's publish time. */
const BATCH_SIZE = 200;
const LEASE_MS = 15_000;
/** A row is published from memory within milliseconds of its commit; if its writer died, another relay takes it after this. */
const WRITTEN_LEASE_MS = 5_000;
const CLEANUP_EVERY_MS = 60_000;
/** Published rows are marked together, at most this long after they went out. */
const MARK_LINGER_MS = 250;

async function startOutbox(this: OutboxService): Promise<void> {
	const c = config();
	const bus = busFor(this.broker);
	this.$outbox = new OutboxRelay(this.name, defineOutboxModel(this.sequelize), this.sql, bus, this.logger, {
		policy: { maxAttempts: c.EVENTS_MAX_ATTEMPTS, baseMs: c.EVENTS_RETRY_BASE_MS, maxMs: c.EVENTS_RETRY_MAX_MS },
		pollMs: c.EVENTS_POLL_MS,
		retentionMs: c.EVENTS_RETENTION_HOURS * 3_600_000,
		batchSize: BATCH_SIZE,
		leaseMs: LEASE_MS,
		writtenLeaseMs: WRITTEN_LEASE_MS,
		nodeId: this.broker.nodeID,
		cleanupEveryMs: CLEANUP_EVERY_MS,
		markLingerMs: MARK_LINGER_MS,
	});
	bus.acquire();
	bus.addSource(this.$outbox);
	this.$outbox.start();
}

async function stopOutbox(this: OutboxService): Promise<void> {
	const relay = this.$outbox;
	if (!relay) return;
	await relay.stop();
	const bus = busFor(this.broker);
	bus.removeSource(relay);
	await bus.release();
}

export const OutboxMixin = {
	merged(schema: Record<string, any>) {
		placeAfterDatabase(schema, "OutboxMixin", { started: startOutbox, stopped: stopOutbox });
	},

	created(this: OutboxService) {
		ensureEventsService(this.broker);
	},

	started: startOutbox,
	stopped: stopOutbox,

	methods: {
		async recordEvent(this: OutboxService, t: Transaction, name: string, payload: Record<string, unknown>) {
			if (!t || typeof (t as Transaction).afterCommit !== "function") {
				throw new Error(`recordEvent(${name}) needs the transaction of the state change`);
			}
			const relay = this.relayFor(name);
			const e = this.envelope(name as EventName, payload as never);
			const columns = relay.claimedColumns(new Date(e.payload.occurredAt));
			await defineOutboxModel(this.sequelize).create({ id: e.id, name, payload: e.payload, ...columns }, { transaction: t });
			t.afterCommit(() => {
				faultPoint("outbox.afterCommit");
				relay.written([{ id: e.id, name, payload: e.payload }]);
				invalidateFor(this.broker, [name]);
			});
			return e.payload;
		},

		outboxPart(this: OutboxService, p: Params, name: string, events: [string, Record<string, unknown>][], requires: string[] = []): Part {
			if (!name.startsWith("outbox")) throw new Error(`Outbox part '${name}' must be named outbox…`);
			const relay = this.relayFor(events[0]?.[0] ?? "?");
			return relay.insertPart(p, name, events.map(([n, payload]) => this.envelope(n as EventName, payload as never)), requires);
		},

		outboxSelectPart(this: OutboxService, p: Params, name: string, event: string, select: string, requires: string[] = []): Part {
			if (!name.startsWith("outbox")) throw new Error(`Outbox part '${name}' must be named outbox…`);
			if (!isValidEventName(event)) throw new Error(`Invalid event name '${event}'`);
			const c = this.relayFor(event).claimedColumns();
			return {
				name,
				sql: `INSERT INTO ${OUTBOX_TABLE} (id, name, payload, status, attempts, next_attempt_at, claim_token, occurred_at) SELECT x.id, ${p.text(event)}, x.payload, 'PENDING', 0, ${p.ts(c.next_attempt_at)}, ${p.text(c.claim_token)}, ${p.ts(c.occurred_at)} FROM (${select}) x WHERE {guard} RETURNING id, name, payload`,
				requires,
			};
		},

		outboxWritten(this: OutboxService, rows: Record<string, any[]>) {
			const written: OutboxRow[] = [];
			for (const [part, list] of Object.entries(rows)) if (part.startsWith("outbox")) written.push(...list);
			if (!written.length) return;
			faultPoint("outbox.afterCommit");
			this.$outbox?.written(written);
			invalidateFor(this.broker, written.map(r => r.name));
		},

		envelope(this: OutboxService, name: string, payload: Record<string, unknown>, now = new Date()): NewEvent {
			if (!isValidEventName(name)) throw new Error(`Invalid event name '${name}'`);
			// The envelope comes last: a payload cannot override the outbox's own id and time.
			const event = { ...payload, eventId: randomUUID(), occurredAt: now.toISOString() };
			return { id: event.eventId, name, payload: event as NewEvent["payload"] };
		},

		relayFor(this: OutboxService, name: string): OutboxRelay {
			if (!this.$outbox) throw new Error(`Event ${name} recorded before '${this.name}' started`);
			return this.$outbox;
		},

		async recordEvents(this: OutboxService, t: Transaction, events: { name: string; payload: Record<string, unknown> }[]) {
			if (!events.length) return;
			if (!t || typeof (t as Transaction).afterCommit !== "function") throw new Error("recordEvents needs the transaction of the state change");
			const relay = this.relayFor(events[0].name);
			// One time for the whole write: these events are facts about different things (consumers never rely on their order).
			const now = new Date();
			const written = events.map(e => this.envelope(e.name as EventName, e.payload as never, now));
			const columns = relay.claimedColumns(now);
			await defineOutboxModel(this.sequelize).bulkCreate(
				written.map(e => ({ id: e.id, name: e.name, payload: e.payload, ...columns })),
				{ transaction: t },
			);
			t.afterCommit(() => {
				faultPoint("outbox.afterCommit");
				relay.written(written.map(e => ({ id: e.id, name: e.name, payload: e.payload })));
				invalidateFor(this.broker, written.map(e => e.name));
			});
		},
	},
} as unknown as Partial<ServiceSchema>;
