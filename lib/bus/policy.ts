/**
 * Pure rules of the event bus: retry schedule, JetStream names derived from the namespace, and
 * what a valid event name is. Unit-tested without a broker.
 */

export interface RetryPolicy {
	/** Deliveries (first one included) before a failing event is dead-lettered. */
	maxAttempts: number;
	baseMs: number;
	maxMs: number;
}

/**
 * Delay before the next delivery after `failures` failed ones: exponential from `baseMs`, capped
 * at `maxMs`, with ±20 % jitter so replicas that failed together do not retry together.
 */
export function retryDelay(failures: number, policy: Pick<RetryPolicy, "baseMs" | "maxMs">, random: () => number = Math.random): number {
	const n = Math.max(1, Math.floor(failures));
	const exponential = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.min(n - 1, 30));
	const jitter = 0.8 + 0.4 * random();
	return Math.max(1, Math.round(Math.min(policy.maxMs, exponential * jitter)));
}

/** `<domain>.<entity>.<fact>`: lower-case tokens, safe as NATS subject tokens. */
const EVENT_NAME = /^[a-z][a-z0-9-]*(\.[a-z][a-z0-9-]*){1,4}$/;

export function isValidEventName(name: string): boolean {
	return typeof name === "string" && name.length <= 120 && EVENT_NAME.test(name);
}

/** A namespace or group as one token of a NATS subject or JetStream name. */
function token(value: string): string {
	const t = value.replace(/[^A-Za-z0-9_-]/g, "_");
	return t || "default";
}

export interface BusNames {
	/** Every event of the namespace, and replays addressed to one group. */
	stream: string;
	/** Dead letters of every group of the namespace. */
	dlqStream: string;
	eventSubject(event: string): string;
	eventSubjects: string;
	replaySubject(group: string): string;
	replaySubjects: string;
	dlqSubject(group: string, event: string): string;
	dlqSubjects: string;
	/** The durable consumer of one group for one event (NATS 2.9 consumers filter one subject). */
	durable(group: string, event: string): string;
	replayDurable(group: string): string;
	/** The event name of a subject published by eventSubject(), or null. */
	eventOf(subject: string): string | null;
}

/** Stream, subject and consumer names: all carry the namespace, so clusters sharing a NATS server never meet. */
export function busNames(namespace: string): BusNames {
	const ns = token(namespace);
	const prefix = `mc.${ns}`;
	return {
		stream: `MC_${ns}_EVENTS`,
		dlqStream: `MC_${ns}_DLQ`,
		eventSubject: event => `${prefix}.events.${event}`,
		eventSubjects: `${prefix}.events.>`,
		replaySubject: group => `${prefix}.replay.${token(group)}`,
		replaySubjects: `${prefix}.replay.>`,
		dlqSubject: (group, event) => `${prefix}.dlq.${token(group)}.${event}`,
		dlqSubjects: `${prefix}.dlq.>`,
		durable: (group, event) => `${ns}__${token(group)}__${event.replace(/\./g, "_")}`,
		replayDurable: group => `${ns}__${token(group)}__replay`,
		eventOf: subject => (subject.startsWith(`${prefix}.events.`) ? subject.slice(prefix.length + 8) : null),
	};
}
