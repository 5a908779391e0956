/**
 * Idempotent event consumer (docs/EVENTS.md). A service declares what it handles:
 *
 *   mixins: [DbMixin({ ..., migrations: [...mine, ...inboxMigrations] }), ConsumerMixin]
 *   subscriptions: { async "orders.order.confirmed"(event, t) { ... } }
 *
 * Each handler runs in a transaction `t` of the service's database in which the event id is
 * recorded in the inbox (unique on event id + consumer), so a redelivered event changes nothing.
 * A handler whose effect is one write can instead give its SQL parts (`StatementHandler`): claim
 * and effect are then one statement.
 * The consumer group is the service name: replicas share the work, each event is applied once.
 */
import { invalidateFor } from "../lib/cache";
import type { Service, ServiceSchema } from "moleculer";
import { DataTypes, type Model, type ModelStatic, Op, type Sequelize, type Transaction } from "sequelize";
import { config } from "../config";
import { busFor } from "../lib/bus";
import { ensureEventsService } from "../lib/bus/events-service";
import { placeAfterDatabase } from "../lib/bus/lifecycle";
import { eventMetrics } from "../lib/bus/metrics";
import { isValidEventName } from "../lib/bus/policy";
import type { BusEvent, ConsumeResult, ConsumerGroup } from "../lib/bus/types";
import type { Params, Part } from "../lib/db/sql";
import type { DbMethods, Migration } from "./db.mixin";

declare module "../node_modules/moleculer/src/service" {
	interface ServiceSchema<TSettings, TMethods, TVars, TThis> {
		/**
		 * Events this service consumes (ConsumerMixin): `handler(event, t)` runs in a transaction
		 * of the service's database that also records the event id in the inbox. `this` is the
		 * service (typed by the handler itself, as services type their own methods).
		 */
		subscriptions?: Record<string, ((this: any, event: any, t: Transaction) => unknown) | StatementHandler>;
		/** Augmentation must repeat the type parameters; this marks them used. */
		readonly __subscriptionTypes?: [TSettings, TMethods, TVars, TThis];
	}
}

export const INBOX_TABLE = "inbox_events";

export const inboxMigrations: Migration[] = [
	{
		name: "inbox-001-inbox-events",
		async up(qi, T) {
			await qi.createTable(INBOX_TABLE, {
				event_id: { type: T.STRING(36), primaryKey: true },
				consumer: { type: T.STRING(64), primaryKey: true },
				event_name: { type: T.STRING(120), allowNull: false },
				applied_at: { type: T.DATE(3), allowNull: false },
			});
			await qi.addIndex(INBOX_TABLE, ["applied_at"], { name: "inbox_events_applied" });
		},
	},
];

export type EventHandler = (this: any, event: any, t: Transaction) => unknown;

/**
 * A handler whose whole effect is one write (lib/db/sql.ts `Part`s): it runs with the inbox claim
 * as ONE statement on PostgreSQL (no BEGIN/COMMIT round trips, no Sequelize transaction), one
 * transaction on SQLite. Every part gets the claim as a requirement, so a duplicate delivery
 * changes nothing; each part's text must hold `{guard}`.
 *
 *   subscriptions: { "orders.order.confirmed": { parts(event, p) { return [...] }, committed(event, rows) { ... } } }
 */
export interface StatementHandler {
	parts(this: any, event: any, p: Params): Part[];
	/** After the commit, with each part's rows (not for a duplicate). */
	committed?(this: any, event: any, rows: Record<string, any[]>): void;
}

const CLAIM = "inbox_claim";

type ConsumerService = Service &
	DbMethods & {
		$consumer?: ConsumerGroup & { ready: boolean };
		$inbox?: ModelStatic<Model>;
		$inboxPruner?: NodeJS.Timeout;
	};

/** Inbox records outlive the bus's retention twice over: no redelivery can arrive after that. */
const PRUNE_EVERY_MS = 3_600_000;

/** Deletes inbox records older than twice the retention period; returns how many. */
export async function pruneInbox(inbox: ModelStatic<Model>, now = new Date()): Promise<number> {
	const keepMs = 2 * config().EVENTS_RETENTION_HOURS * 3_600_000;
	return inbox.destroy({ where: { applied_at: { [Op.lt]: new Date(now.getTime() - keepMs) } } });
}

function defineInboxModel(sequelize: Sequelize): ModelStatic<Model> {
	if (sequelize.isDefined("InboxEvent")) return sequelize.model("InboxEvent");
	return sequelize.define(
		"InboxEvent",
		{
			event_id: { type: DataTypes.STRING(36), primaryKey: true },
			consumer: { type: DataTypes.STRING(64), primaryKey: true },
			event_name: DataTypes.STRING(120),
			applied_at: DataTypes.DATE(3),
		},
		{ tableName: INBOX_TABLE, timestamps: false },
	);
}

/** The inbox row for an event: inserted, or nothing when this group has it already (a duplicate). */
function claimSql(p: Params, eventId: string, group: string, name: string): string {
	return `INSERT INTO ${INBOX_TABLE} (event_id, consumer, event_name, applied_at) VALUES (${p.text(eventId)}, ${p.text(group)}, ${p.text(name)}, ${p.ts(new Date())}) ON CONFLICT DO NOTHING RETURNING event_id`;
}

/** The inbox insert lost to a concurrent or earlier delivery of the same event. */
class AlreadyApplied extends Error {}

/** Applies one event at most once for this service: inbox row and handler effects in one transaction. */
async function consume(svc: ConsumerService, handlers: Record<string, EventHandler | StatementHandler>, name: string, event: BusEvent): Promise<ConsumeResult> {
	const group = svc.name;
	const handler = handlers[name];
	if (!handler) return count(group, name, "ignored");
	if (typeof event?.eventId !== "string" || !event.eventId || event.eventId.length > 36) {
		throw new Error(`Event ${name} without a valid eventId`);
	}
	try {
		if (typeof handler !== "function") {
			const p = svc.sql.params();
			const claim: Part = { name: CLAIM, sql: claimSql(p, event.eventId, group, name) };
			const parts = handler.parts.call(svc, event, p).map(x => ({ ...x, requires: [CLAIM, ...(x.requires ?? [])] }));
			const rows = await svc.sql.write([claim, ...parts], p);
			if (!rows[CLAIM].length) return count(group, name, "duplicate");
			handler.committed?.call(svc, event, rows);
			invalidateFor(svc.broker, [name]);
			return count(group, name, "applied");
		}
		await svc.transaction(async t => {
			// First, so that a concurrent delivery of the same event waits on this row and then finds it
			// taken. No look-up before it: one plain statement decides (a redelivery is the rare case).
			const p = svc.sql.params();
			const claimed = await svc.sql.on(t).query(claimSql(p, event.eventId, group, name), p.values);
			if (!claimed.length) throw new AlreadyApplied();
			await handler.call(svc, event, t);
		});
	} catch (err) {
		if (err instanceof AlreadyApplied) return count(group, name, "duplicate");
		eventMetrics.handlerFailures.inc({ group, event: name });
		svc.logger.warn(`Handler of ${name} ${event.eventId} in '${group}' failed: ${(err as Error)?.message ?? err}`);
		throw err;
	}
	// The read caches this event makes stale, on every node (lib/cache.ts).
	invalidateFor(svc.broker, [name]);
	return count(group, name, "applied");
}

function count(group: string, event: string, result: ConsumeResult): ConsumeResult {
	eventMetrics.consumed.inc({ group, event, result });
	return result;
}

async function startConsumer(this: ConsumerService): Promise<void> {
	const group = this.$consumer!;
	if (!group.events.length) return;
	const inbox = defineInboxModel(this.sequelize);
	this.$inbox = inbox;
	this.$inboxPruner = setInterval(() => {
		pruneInbox(inbox).catch(err => this.logger.warn(`Inbox clean-up of '${this.name}' failed: ${err.message}`));
	}, PRUNE_EVERY_MS);
	this.$inboxPruner.unref();
	group.ready = true;
	const bus = busFor(this.broker);
	bus.acquire();
	await bus.startConsuming(group);
}

async function stopConsumer(this: ConsumerService): Promise<void> {
	if (this.$inboxPruner) clearInterval(this.$inboxPruner);
	const group = this.$consumer;
	if (!group?.ready) return;
	const bus = busFor(this.broker);
	await bus.stopConsuming(group);
	group.ready = false;
	await bus.release();
}

export const ConsumerMixin = {
	merged(schema: Record<string, any>) {
		placeAfterDatabase(schema, "ConsumerMixin", { started: startConsumer, stopped: stopConsumer });
	},

	created(this: ConsumerService) {
		const handlers = ((this.schema as any).subscriptions ?? {}) as Record<string, EventHandler | StatementHandler>;
		for (const [name, fn] of Object.entries(handlers)) {
			if (!isValidEventName(name)) throw new Error(`Invalid event name '${name}' in subscriptions of '${this.name}'`);
			if (typeof fn !== "function" && typeof fn?.parts !== "function") throw new Error(`Subscription '${name}' of '${this.name}' is neither a function nor { parts }`);
		}
		const group: ConsumerGroup & { ready: boolean } = {
			group: this.name,
			events: Object.keys(handlers),
			ready: false,
			isReady: () => group.ready,
			consume: (name, event) => consume(this, handlers, name, event),
		};
		this.$consumer = group;
		ensureEventsService(this.broker);
		// Registered now, before any producer starts, so no event is published past this group.
		if (group.events.length) busFor(this.broker).register(group);
	},

	started: startConsumer,
	stopped: stopConsumer,
} as unknown as Partial<ServiceSchema>;
