/**
 * Transactional outbox (docs/EVENTS.md). A service records an event in the transaction of the
 * state change it reports:
 *
 *   mixins: [DbMixin({ ..., migrations: [...mine, ...outboxMigrations] }), OutboxMixin]
 *   await this.transaction(async t => { ...; await this.recordEvent(t, "catalog.product.created", snapshot); });
 *
 * The event (payload + eventId + occurredAt) commits or rolls back with the change; after the
 * commit the relay publishes it (JetStream in a cluster, the local consumers in process), and a
 * periodic pass publishes whatever a crash or an outage left behind.
 */
import { randomUUID } from "node:crypto";
import type { Service, ServiceSchema } from "moleculer";
import type { Transaction } from "sequelize";
import { config } from "../config";
import { busFor } from "../lib/bus";
import { ensureEventsService } from "../lib/bus/events-service";
import { placeAfterDatabase } from "../lib/bus/lifecycle";
import { OUTBOX_TABLE, OutboxRelay, defineOutboxModel } from "../lib/bus/outbox-relay";
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
	/** Records many events in `t` with one INSERT (bulk writes such as a catalogue import); they share one occurredAt. */
	recordEvents(t: Transaction, events: RecordedEvent[]): Promise<void>;
}

/** One event of a bulk write: its name and its payload, typed together. */
export type RecordedEvent = { [N in EventName]: { name: N; payload: EventPayloads[N] } }[EventName];

type OutboxService = Service & DbMethods & OutboxMethods & { $outbox?: OutboxRelay };

/** Relay tuning that is not configuration: a batch per claim, a claim lease well above a batch's publish time. */
const BATCH_SIZE = 200;
const LEASE_MS = 15_000;
const CLEANUP_EVERY_MS = 60_000;

async function startOutbox(this: OutboxService): Promise<void> {
	const c = config();
	const bus = busFor(this.broker);
	this.$outbox = new OutboxRelay(this.name, defineOutboxModel(this.sequelize), bus, this.logger, {
		policy: { maxAttempts: c.EVENTS_MAX_ATTEMPTS, baseMs: c.EVENTS_RETRY_BASE_MS, maxMs: c.EVENTS_RETRY_MAX_MS },
		pollMs: c.EVENTS_POLL_MS,
		retentionMs: c.EVENTS_RETENTION_HOURS * 3_600_000,
		batchSize: BATCH_SIZE,
		leaseMs: LEASE_MS,
		cleanupEveryMs: CLEANUP_EVERY_MS,
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
			if (!isValidEventName(name)) throw new Error(`Invalid event name '${name}'`);
			const relay = this.$outbox;
			if (!relay) throw new Error(`recordEvent(${name}) called before '${this.name}' started`);
			const now = new Date();
			// The envelope comes last: a payload cannot override the outbox's own id and time.
			const event = { ...payload, eventId: randomUUID(), occurredAt: now.toISOString() };
			await defineOutboxModel(this.sequelize).create(
				{ id: event.eventId, name, payload: event, status: "PENDING", attempts: 0, next_attempt_at: now, occurred_at: now },
				{ transaction: t },
			);
			t.afterCommit(() => {
				faultPoint("outbox.afterCommit");
				relay.kick();
			});
			return event;
		},

		async recordEvents(this: OutboxService, t: Transaction, events: { name: string; payload: Record<string, unknown> }[]) {
			if (!events.length) return;
			if (!t || typeof (t as Transaction).afterCommit !== "function") throw new Error("recordEvents needs the transaction of the state change");
			const bad = events.find(e => !isValidEventName(e.name));
			if (bad) throw new Error(`Invalid event name '${bad.name}'`);
			const relay = this.$outbox;
			if (!relay) throw new Error(`recordEvents called before '${this.name}' started`);
			// One time for the whole write: these events are facts about different things (consumers never rely on their order).
			const now = new Date();
			const rows = events.map(e => {
				const event = { ...e.payload, eventId: randomUUID(), occurredAt: now.toISOString() };
				return { id: event.eventId, name: e.name, payload: event, status: "PENDING", attempts: 0, next_attempt_at: now, occurred_at: now };
			});
			await defineOutboxModel(this.sequelize).bulkCreate(rows, { transaction: t });
			t.afterCommit(() => {
				faultPoint("outbox.afterCommit");
				relay.kick();
			});
		},
	},
} as unknown as Partial<ServiceSchema>;
