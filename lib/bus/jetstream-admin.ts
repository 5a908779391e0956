/**
 * The operators' side of the JetStream bus: dead letters (list, replay to the failed group,
 * discard) and every group's backlog, read from the streams so every node answers the same.
 */
import { type JetStreamClient, type JetStreamManager, type StoredMsg, headers as natsHeaders } from "nats";
import { eventMetrics } from "./metrics";
import type { BusNames } from "./policy";
import type { BusEvent, BusStatus, DeadLetter } from "./types";

/** A publish (or any JetStream API call) not acknowledged by then fails; the caller retries later. */
export const REQUEST_TIMEOUT_MS = 5000;

const decoder = new TextDecoder();

export interface JetStreamApi {
	js: JetStreamClient;
	jsm: JetStreamManager;
}

/** The client's manager has the direct-get API; its interface does not declare it. */
type DirectGet = { direct: { getMessage(stream: string, q: { seq: number; next_by_subj: string }): Promise<StoredMsg> } };

export function isNotFound(err: unknown): boolean {
	const e = err as { code?: string; api_error?: { err_code?: number }; message?: string };
	return e?.code === "404" || e?.api_error?.err_code === 10037 || e?.api_error?.err_code === 10014 || /not found/i.test(e?.message ?? "");
}

function toDeadLetter(msg: StoredMsg): DeadLetter {
	const h = msg.header;
	let payload: BusEvent;
	try {
		payload = JSON.parse(decoder.decode(msg.data)) as BusEvent;
	} catch {
		payload = { eventId: "", occurredAt: "", raw: decoder.decode(msg.data) };
	}
	return {
		id: `dlq:${msg.seq}`,
		event: h.get("Mc-Event"),
		eventId: String(payload.eventId ?? ""),
		group: h.get("Mc-Group") || null,
		attempts: Number(h.get("Mc-Attempts") || 0),
		error: h.get("Mc-Error") || null,
		deadAt: h.get("Mc-Dead-At") || msg.time.toISOString(),
		payload,
	};
}

/** Oldest first, optionally one group's, at most `limit` (direct get skips deleted sequences). */
export async function listDeadLetters({ jsm }: JetStreamApi, names: BusNames, limit: number, group?: string): Promise<DeadLetter[]> {
	const subject = group ? `${names.dlqSubject(group, "x").slice(0, -2)}.>` : names.dlqSubjects;
	const out: DeadLetter[] = [];
	let seq = 1;
	while (out.length < limit) {
		let msg: StoredMsg;
		try {
			msg = await (jsm as JetStreamManager & DirectGet).direct.getMessage(names.dlqStream, { seq, next_by_subj: subject });
		} catch (err) {
			if (isNotFound(err)) break;
			throw err;
		}
		out.push(toDeadLetter(msg));
		seq = msg.seq + 1;
	}
	return out;
}

async function stored(jsm: JetStreamManager, names: BusNames, id: string): Promise<StoredMsg | null> {
	const m = /^dlq:(\d+)$/.exec(id);
	if (!m) return null;
	try {
		return await jsm.streams.getMessage(names.dlqStream, { seq: Number(m[1]) });
	} catch (err) {
		if (isNotFound(err)) return null;
		throw err;
	}
}

/** Publishes the event again to the failed group only (fresh attempts), then removes the dead letter. */
export async function replayDeadLetter({ js, jsm }: JetStreamApi, names: BusNames, id: string): Promise<boolean> {
	const msg = await stored(jsm, names, id);
	if (!msg) return false;
	const dead = toDeadLetter(msg);
	const h = natsHeaders();
	h.set("Mc-Event", dead.event);
	h.set("Mc-Replay-Of", id);
	// The message id makes a replay repeated within the duplicate window a no-op.
	await js.publish(names.replaySubject(dead.group ?? "unknown"), msg.data, { msgID: `replay:${msg.seq}`, headers: h, timeout: REQUEST_TIMEOUT_MS });
	await jsm.streams.deleteMessage(names.dlqStream, msg.seq, false);
	eventMetrics.replayed.inc({ event: dead.event });
	return true;
}

export async function discardDeadLetter({ jsm }: JetStreamApi, names: BusNames, id: string): Promise<boolean> {
	const msg = await stored(jsm, names, id);
	if (!msg) return false;
	return jsm.streams.deleteMessage(names.dlqStream, msg.seq, false);
}

/** Every group's backlog in the namespace and the number of dead letters. */
export async function backlog({ jsm }: JetStreamApi, names: BusNames): Promise<Omit<BusStatus, "mode">> {
	const consumers = await jsm.consumers.list(names.stream).next();
	const dlq = await jsm.streams.info(names.dlqStream);
	return {
		consumers: consumers.map(ci => {
			const [, group = "", event = ""] = ci.name.split("__");
			return {
				group,
				event: event === "replay" ? "(replays)" : event.replace(/_/g, "."),
				pending: ci.num_pending,
				inFlight: ci.num_ack_pending,
				redelivered: ci.num_redelivered,
			};
		}),
		deadLetters: dlq.state.messages,
	};
}
