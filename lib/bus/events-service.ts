/**
 * `$events`: the operators' handle on events (the REPL's `events ...` commands call these
 * actions). Created on every broker that runs a service with the outbox or consumer mixin.
 * Internal: no `auth`, not in the route table.
 *
 * Dead letters live in the producers' outboxes (in process: state DEAD) or in the JetStream
 * dead-letter stream (cluster); ids say which: `outbox:<service>:<eventId>` / `dlq:<sequence>`.
 */
import type { Context, ServiceBroker, ServiceSchema } from "moleculer";
import { NotFoundError, UnprocessableError } from "../errors";
import { busFor } from "./index";
import type { DeadLetter } from "./types";

export const EVENTS_SERVICE = "$events";

interface ListParams {
	group?: string;
	limit?: number;
}

interface ReplayParams {
	id?: string;
	all?: boolean;
	group?: string;
}

async function listDeadLetters(broker: ServiceBroker, limit: number, group?: string): Promise<DeadLetter[]> {
	const bus = busFor(broker);
	const fromOutboxes = (await Promise.all(bus.sources().map(s => s.deadLetters(limit)))).flat();
	const all = [...fromOutboxes, ...(await bus.busDeadLetters(limit, group))].filter(
		d => !group || (d.group ?? "").split(",").includes(group),
	);
	all.sort((a, b) => (a.deadAt ?? "").localeCompare(b.deadAt ?? ""));
	return all.slice(0, limit);
}

async function replayOne(broker: ServiceBroker, id: string): Promise<boolean> {
	const bus = busFor(broker);
	const outbox = /^outbox:([^:]+):(.+)$/.exec(id);
	if (outbox) {
		const source = bus.sources().find(s => s.service === outbox[1]);
		return source ? source.replay(outbox[2]) : false;
	}
	return bus.replayBusDeadLetter(id);
}

async function discardOne(broker: ServiceBroker, id: string): Promise<boolean> {
	const bus = busFor(broker);
	const outbox = /^outbox:([^:]+):(.+)$/.exec(id);
	if (outbox) {
		const source = bus.sources().find(s => s.service === outbox[1]);
		return source ? source.discard(outbox[2]) : false;
	}
	return bus.discardBusDeadLetter(id);
}

export const EventsService: ServiceSchema = {
	name: EVENTS_SERVICE,

	actions: {
		/** Dead letters, oldest first: `{ items: [{ id, event, eventId, group, attempts, error, deadAt, payload }], total }`. */
		deadLetters: {
			params: { group: "string|max:64|optional", limit: "number|integer|min:1|max:1000|convert|optional" },
			async handler(ctx: Context<ListParams>) {
				const items = await listDeadLetters(this.broker, ctx.params.limit ?? 100, ctx.params.group);
				return { items, total: items.length };
			},
		},

		/** Delivers dead letters again with a fresh set of attempts: one (`id`) or all (`all`, optionally of one `group`). */
		replay: {
			params: { id: "string|max:200|optional", all: "boolean|convert|optional", group: "string|max:64|optional" },
			async handler(ctx: Context<ReplayParams>) {
				const { id, all, group } = ctx.params;
				if (!id && !all) throw new UnprocessableError("Name a dead letter (id) or ask for all", "VALIDATION_ERROR", [{ field: "id", message: "id or all is required" }]);
				const ids = id ? [id] : (await listDeadLetters(this.broker, 1000, group)).map(d => d.id);
				const replayed: string[] = [];
				for (const one of ids) {
					if (await replayOne(this.broker, one)) replayed.push(one);
				}
				if (id && !replayed.length) throw new NotFoundError("Dead letter", "DEAD_LETTER_NOT_FOUND");
				this.logger.info(`Replayed ${replayed.length} dead letter(s)`, replayed);
				return { replayed: replayed.length, ids: replayed };
			},
		},

		/** Drops a dead letter for good (an operator decided it must not be applied). */
		discard: {
			params: { id: "string|max:200" },
			async handler(ctx: Context<{ id: string }>) {
				if (!(await discardOne(this.broker, ctx.params.id))) throw new NotFoundError("Dead letter", "DEAD_LETTER_NOT_FOUND");
				this.logger.warn(`Dead letter ${ctx.params.id} discarded by an operator`);
				return { discarded: 1 };
			},
		},

		/** Outbox counts of this node's producers, and (cluster) the JetStream consumers' backlog. */
		status: {
			params: {},
			async handler() {
				const bus = busFor(this.broker);
				const outboxes: Record<string, Record<string, number>> = {};
				for (const s of bus.sources()) outboxes[s.service] = await s.counts();
				return { nodeID: this.broker.nodeID, ...(await bus.status()), outboxes };
			},
		},
	},
};

/** Creates `$events` on the broker once, whichever events mixin asks first. */
export function ensureEventsService(broker: ServiceBroker): void {
	if (broker.getLocalService(EVENTS_SERVICE)) return;
	broker.createService(EventsService);
}
