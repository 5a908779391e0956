/**
 * The cluster's bus: NATS JetStream through the `nats` client (docs/EVENTS.md says why not
 * @moleculer/channels). One connection per broker, to the TRANSPORTER URL.
 *
 * - Stream `MC_<ns>_EVENTS` holds every event (`mc.<ns>.events.<name>`, message id = eventId, so
 *   a row the relay publishes twice is stored once) and replays addressed to one group
 *   (`mc.<ns>.replay.<group>`).
 * - Each consumer group has one durable pull consumer per event it handles (NATS 2.9 consumers
 *   filter one subject) plus one for its replays; replicas pull from the same consumers, so each
 *   message goes to one of them.
 * - A message is acknowledged after the handler's transaction committed; a failure is NAKed with
 *   a backoff delay; the last allowed attempt moves it to `MC_<ns>_DLQ` (`mc.<ns>.dlq.<group>.<name>`)
 *   and acknowledges it there. Operators list and replay dead letters through `$events`.
 */
import {
	AckPolicy,
	type ConsumerConfig,
	type ConsumerMessages,
	DeliverPolicy,
	DiscardPolicy,
	type JetStreamClient,
	type JetStreamManager,
	type JsMsg,
	type NatsConnection,
	RetentionPolicy,
	StorageType,
	type StreamConfig,
	connect,
	headers as natsHeaders,
	nanos,
} from "nats";
import type { ServiceBroker } from "moleculer";
import { config } from "../../config";
import { natsAuthOptions } from "../nats-options";
import { REQUEST_TIMEOUT_MS, backlog, discardDeadLetter, isNotFound, listDeadLetters, replayDeadLetter } from "./jetstream-admin";
import { eventMetrics } from "./metrics";
import { type BusNames, type RetryPolicy, busNames, retryDelay } from "./policy";
import type { Bus, BusEvent, BusStatus, ConsumerGroup, DeadLetter, OutboxSource } from "./types";

/** A stored message id is dropped as a duplicate within this window (the relay's lease is far shorter). */
const DUPLICATE_WINDOW_MS = 10 * 60_000;
/** Messages a replica holds at once per consumer; small, so replicas share a burst. */
const PULL_BATCH = 16;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

interface LoopSpec {
	durable: string;
	filter: string;
	/** The replay consumer reads the event name from a header instead of the subject. */
	replay: boolean;
}

interface Loop {
	stopped: boolean;
	messages?: ConsumerMessages;
	wake?: () => void;
	done: Promise<void>;
}

interface Api {
	nc: NatsConnection;
	js: JetStreamClient;
	jsm: JetStreamManager;
}

function oneLine(text: string, max = 500): string {
	return text.replace(/[\r\n]+/g, " ").slice(0, max);
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
	let timer: NodeJS.Timeout | undefined;
	const timeout = new Promise<never>((_, fail) => {
		timer = setTimeout(() => fail(new Error(`${what}: no answer within ${ms} ms`)), ms);
	});
	return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

export class JetStreamBus implements Bus {
	readonly mode = "jetstream" as const;
	readonly names: BusNames;
	private api?: Promise<Api>;
	private streamsReady?: Promise<void>;
	private refs = 0;
	/** Bumped on close: a connection that completes after its bus was closed is closed at once. */
	private generation = 0;
	private readonly groups = new Map<string, ConsumerGroup>();
	private readonly loops = new Map<string, Loop[]>();
	private readonly outboxes = new Set<OutboxSource>();
	private readonly policy: RetryPolicy;
	private readonly ackWaitMs: number;
	private readonly retentionMs: number;

	constructor(
		private readonly broker: ServiceBroker,
		private readonly url: string,
		namespace: string,
	) {
		this.names = busNames(namespace);
		const c = config();
		this.policy = { maxAttempts: c.EVENTS_MAX_ATTEMPTS, baseMs: c.EVENTS_RETRY_BASE_MS, maxMs: c.EVENTS_RETRY_MAX_MS };
		this.ackWaitMs = c.EVENTS_ACK_WAIT_MS;
		this.retentionMs = c.EVENTS_RETENTION_HOURS * 3_600_000;
	}

	private get logger() {
		return this.broker.logger;
	}

	/** Connects once (reconnecting for ever afterwards) and makes sure both streams exist. */
	private async ready(): Promise<Api> {
		const generation = this.generation;
		this.api ??= (async () => {
			const nc = await connect({
				servers: this.url,
				name: `${this.broker.nodeID}/events`,
				maxReconnectAttempts: -1,
				reconnectTimeWait: 250,
				waitOnFirstConnect: true,
				// No stack captured per request (nats.js makes up to two Error objects for each JetStream
				// publish and ack otherwise); our own timeout errors name the subject.
				noAsyncTraces: true,
				// The cluster's NATS credentials and TLS, as the transporter uses them.
				...natsAuthOptions(config()),
			});
			void (async () => {
				for await (const s of nc.status()) {
					if (s.type === "disconnect" || s.type === "reconnect") this.logger.info(`Events connection to NATS: ${s.type}`);
				}
			})();
			if (generation !== this.generation) {
				await nc.close();
				throw new Error("Events bus closed while connecting");
			}
			const jsm = await nc.jetstreamManager({ timeout: REQUEST_TIMEOUT_MS });
			return { nc, jsm, js: nc.jetstream({ timeout: REQUEST_TIMEOUT_MS }) };
		})().catch(err => {
			this.api = undefined;
			throw err;
		});
		const api = await withTimeout(this.api, REQUEST_TIMEOUT_MS, `NATS JetStream at ${this.url}`);
		this.streamsReady ??= this.ensureStreams(api.jsm).catch(err => {
			this.streamsReady = undefined;
			throw err;
		});
		await this.streamsReady;
		return api;
	}

	private async ensureStreams(jsm: JetStreamManager): Promise<void> {
		await this.ensureStream(jsm, {
			name: this.names.stream,
			subjects: [this.names.eventSubjects, this.names.replaySubjects],
			retention: RetentionPolicy.Limits,
			storage: StorageType.File,
			discard: DiscardPolicy.Old,
			max_age: nanos(this.retentionMs),
			duplicate_window: nanos(DUPLICATE_WINDOW_MS),
			num_replicas: 1,
		});
		// Dead letters stay until an operator replays or discards them.
		await this.ensureStream(jsm, {
			name: this.names.dlqStream,
			subjects: [this.names.dlqSubjects],
			retention: RetentionPolicy.Limits,
			storage: StorageType.File,
			discard: DiscardPolicy.Old,
			duplicate_window: nanos(DUPLICATE_WINDOW_MS),
			allow_direct: true,
			num_replicas: 1,
		});
	}

	private async ensureStream(jsm: JetStreamManager, cfg: Partial<StreamConfig> & { name: string }): Promise<void> {
		try {
			await jsm.streams.info(cfg.name);
			await jsm.streams.update(cfg.name, cfg);
		} catch (err) {
			if (!isNotFound(err)) throw err;
			try {
				await jsm.streams.add(cfg);
			} catch (addErr) {
				// Another node created it a moment ago.
				await jsm.streams.info(cfg.name).catch(() => {
					throw addErr;
				});
			}
		}
	}

	private async ensureConsumer(jsm: JetStreamManager, spec: LoopSpec): Promise<void> {
		const cfg: Partial<ConsumerConfig> = {
			durable_name: spec.durable,
			filter_subject: spec.filter,
			ack_policy: AckPolicy.Explicit,
			deliver_policy: DeliverPolicy.All,
			ack_wait: nanos(this.ackWaitMs),
			// Deliveries are counted here, not by the server: the last one goes to the dead letters.
			max_deliver: -1,
			max_ack_pending: 1000,
		};
		try {
			const info = await jsm.consumers.info(this.names.stream, spec.durable);
			if (info.config.ack_wait !== cfg.ack_wait) await jsm.consumers.update(this.names.stream, spec.durable, { ack_wait: cfg.ack_wait });
		} catch (err) {
			if (!isNotFound(err)) throw err;
			await jsm.consumers.add(this.names.stream, cfg);
		}
	}

	async publish(name: string, event: BusEvent): Promise<void> {
		const { js } = await this.ready();
		const h = natsHeaders();
		h.set("Mc-Event", name);
		await js.publish(this.names.eventSubject(name), encoder.encode(JSON.stringify(event)), { msgID: event.eventId, headers: h, timeout: REQUEST_TIMEOUT_MS });
	}

	register(group: ConsumerGroup): void {
		this.groups.set(group.group, group);
	}

	async startConsuming(group: ConsumerGroup): Promise<void> {
		this.groups.set(group.group, group);
		if (this.loops.has(group.group)) return;
		const specs: LoopSpec[] = [
			...group.events.map(event => ({ durable: this.names.durable(group.group, event), filter: this.names.eventSubject(event), replay: false })),
			{ durable: this.names.replayDurable(group.group), filter: this.names.replaySubject(group.group), replay: true },
		];
		this.loops.set(
			group.group,
			specs.map(spec => this.runLoop(group, spec)),
		);
	}

	async stopConsuming(group: ConsumerGroup): Promise<void> {
		const loops = this.loops.get(group.group) ?? [];
		this.loops.delete(group.group);
		for (const loop of loops) {
			loop.stopped = true;
			loop.messages?.stop();
			loop.wake?.();
		}
		await Promise.all(loops.map(l => l.done));
	}

	/** Pulls and handles one consumer's messages until stopped, starting over after any failure. */
	private runLoop(group: ConsumerGroup, spec: LoopSpec): Loop {
		const loop: Loop = { stopped: false, done: Promise.resolve() };
		loop.done = (async () => {
			let failures = 0;
			while (!loop.stopped) {
				try {
					const { js, jsm } = await this.ready();
					await this.ensureConsumer(jsm, spec);
					const consumer = await js.consumers.get(this.names.stream, spec.durable);
					const messages = await consumer.consume({ max_messages: PULL_BATCH });
					loop.messages = messages;
					if (loop.stopped) messages.stop();
					failures = 0;
					for await (const m of messages) {
						await this.handle(group, spec, m);
						if (loop.stopped) break;
					}
				} catch (err) {
					if (loop.stopped) break;
					failures++;
					this.logger.warn(`Consumer ${spec.durable} interrupted (${(err as Error).message}); starting over`);
				}
				if (!loop.stopped) await this.pause(loop, Math.min(5000, 100 * 2 ** Math.min(failures, 6)));
			}
		})();
		return loop;
	}

	private pause(loop: Loop, ms: number): Promise<void> {
		return new Promise(resolve => {
			const timer = setTimeout(resolve, ms);
			loop.wake = () => {
				clearTimeout(timer);
				resolve();
			};
		});
	}

	private async handle(group: ConsumerGroup, spec: LoopSpec, m: JsMsg): Promise<void> {
		const name = spec.replay ? (m.headers?.get("Mc-Event") ?? "") : (this.names.eventOf(m.subject) ?? "");
		const attempt = m.info.redeliveryCount;
		let event: BusEvent;
		try {
			event = JSON.parse(decoder.decode(m.data)) as BusEvent;
		} catch {
			await this.deadLetter(group.group, name, m, new Error("Message is not valid JSON"), attempt);
			return;
		}
		// A slow handler keeps its message: JetStream would redeliver it after ack_wait.
		const keepAlive = setInterval(() => m.working(), Math.max(500, this.ackWaitMs / 3));
		try {
			await group.consume(name, event);
		} catch (err) {
			clearInterval(keepAlive);
			if (attempt >= this.policy.maxAttempts) {
				await this.deadLetter(group.group, name, m, err as Error, attempt);
			} else {
				const delay = retryDelay(attempt, this.policy);
				this.logger.warn(`Event ${name} ${event.eventId} failed in '${group.group}' (attempt ${attempt}/${this.policy.maxAttempts}); redelivery in ${delay} ms`);
				m.nak(delay);
			}
			return;
		}
		clearInterval(keepAlive);
		// Acknowledged without waiting for the server to confirm (no ackAck round trip per event): a
		// lost acknowledgement means a redelivery, which the inbox turns into a no-op (docs/EVENTS.md).
		m.ack();
	}

	/** Moves a message to the dead-letter stream, then acknowledges it; if that fails, it comes back later. */
	private async deadLetter(group: string, name: string, m: JsMsg, err: Error, attempts: number): Promise<void> {
		try {
			const { js } = await this.ready();
			const h = natsHeaders();
			h.set("Mc-Event", name || "unknown");
			h.set("Mc-Group", group);
			h.set("Mc-Attempts", String(attempts));
			h.set("Mc-Error", oneLine(err?.message ?? String(err)));
			h.set("Mc-Dead-At", new Date().toISOString());
			h.set("Mc-Source-Seq", String(m.info.streamSequence));
			await js.publish(this.names.dlqSubject(group, name || "unknown"), m.data, {
				msgID: `${group}:${m.info.streamSequence}`,
				headers: h,
				timeout: REQUEST_TIMEOUT_MS,
			});
			await m.ackAck({ timeout: REQUEST_TIMEOUT_MS });
			eventMetrics.deadLettered.inc({ group, event: name });
			this.logger.error(`Event ${name} (stream seq ${m.info.streamSequence}) dead-lettered by '${group}' after ${attempts} attempts: ${err?.message}`);
		} catch (dlqErr) {
			this.logger.warn(`Cannot dead-letter ${name} for '${group}' yet (${(dlqErr as Error).message}); it will be delivered again`);
			m.nak(this.policy.baseMs);
		}
	}

	async busDeadLetters(limit: number, group?: string): Promise<DeadLetter[]> {
		return listDeadLetters(await this.ready(), this.names, limit, group);
	}

	async replayBusDeadLetter(id: string): Promise<boolean> {
		return replayDeadLetter(await this.ready(), this.names, id);
	}

	async discardBusDeadLetter(id: string): Promise<boolean> {
		return discardDeadLetter(await this.ready(), this.names, id);
	}

	async status(): Promise<BusStatus> {
		return { mode: this.mode, ...(await backlog(await this.ready(), this.names)) };
	}

	addSource(source: OutboxSource): void {
		this.outboxes.add(source);
	}

	removeSource(source: OutboxSource): void {
		this.outboxes.delete(source);
	}

	sources(): OutboxSource[] {
		return [...this.outboxes];
	}

	acquire(): void {
		this.refs++;
	}

	async release(): Promise<void> {
		this.refs = Math.max(0, this.refs - 1);
		if (this.refs > 0) return;
		for (const group of [...this.groups.values()]) await this.stopConsuming(group);
		const api = this.api;
		this.generation++;
		this.api = undefined;
		this.streamsReady = undefined;
		if (!api) return;
		try {
			const { nc } = await withTimeout(api, 1000, "NATS connection");
			await nc.close();
		} catch (err) {
			this.logger.warn(`Events connection closed uncleanly: ${(err as Error).message}`);
		}
	}
}
