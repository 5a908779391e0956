/**
 * What the outbox relay, the consumers and the `$events` service see of the event bus. Two
 * implementations: in process (embedded default) and NATS JetStream (cluster).
 */
import type { EventEnvelope } from "../events";

export type BusEvent = EventEnvelope & Record<string, unknown>;

export type ConsumeResult = "applied" | "duplicate" | "ignored";

/** One consuming service on this broker: its group name is the service name. */
export interface ConsumerGroup {
	readonly group: string;
	readonly events: string[];
	/** False until the service has started (its database is open). */
	isReady(): boolean;
	/** Applies an event once (inbox); throws when the handler fails. */
	consume(name: string, event: BusEvent): Promise<ConsumeResult>;
}

export interface DeadLetter {
	/** `outbox:<service>:<eventId>` (embedded) or `dlq:<sequence>` (JetStream). */
	id: string;
	event: string;
	eventId: string;
	/** The consumer group whose handler failed. */
	group: string | null;
	attempts: number;
	error: string | null;
	deadAt: string | null;
	payload: BusEvent;
}

/** A producing service on this broker (its outbox), as the `$events` service sees it. */
export interface OutboxSource {
	readonly service: string;
	deadLetters(limit: number): Promise<DeadLetter[]>;
	/** Puts a dead event back to PENDING (returns false when there is no such dead event). */
	replay(eventId: string): Promise<boolean>;
	discard(eventId: string): Promise<boolean>;
	counts(): Promise<Record<string, number>>;
	kick(): void;
}

export interface ConsumerStatus {
	group: string;
	event: string;
	/** Messages not yet delivered to the group. */
	pending: number;
	/** Delivered, not yet acknowledged. */
	inFlight: number;
	redelivered: number;
}

export interface BusStatus {
	mode: "embedded" | "jetstream";
	consumers: ConsumerStatus[];
	deadLetters: number | null;
}

export interface Bus {
	readonly mode: "embedded" | "jetstream";
	/** Hands one recorded event to the bus; resolves once it is safely there (or applied, in process). */
	publish(name: string, event: BusEvent): Promise<void>;
	/** Registers a group (at service creation, so no event is published past it before it starts). */
	register(group: ConsumerGroup): void;
	/** Starts delivering to a registered group (at service start). */
	startConsuming(group: ConsumerGroup): Promise<void>;
	/** Stops delivering to a group, waiting for the handler in flight. */
	stopConsuming(group: ConsumerGroup): Promise<void>;
	addSource(source: OutboxSource): void;
	removeSource(source: OutboxSource): void;
	sources(): OutboxSource[];
	/** Dead letters kept by the bus itself (JetStream's dead-letter stream); the outboxes hold the rest. */
	busDeadLetters(limit: number, group?: string): Promise<DeadLetter[]>;
	replayBusDeadLetter(id: string): Promise<boolean>;
	discardBusDeadLetter(id: string): Promise<boolean>;
	status(): Promise<BusStatus>;
	/** Reference-counted by the services using the bus on a broker; the last release closes it. */
	acquire(): void;
	release(): Promise<void>;
}

/** In process, one or more consumers' handlers failed: counts towards dead-lettering. */
export class HandlerFailedError extends Error {
	constructor(public readonly failures: { group: string; error: Error }[]) {
		super(failures.map(f => `${f.group}: ${f.error.message}`).join("; "));
		this.name = "HandlerFailedError";
	}
}

/** In process, a consumer is registered but not started yet: try again shortly, no attempt spent. */
export class ConsumerNotReadyError extends Error {
	constructor(public readonly group: string) {
		super(`Consumer '${group}' has not started yet`);
		this.name = "ConsumerNotReadyError";
	}
}
