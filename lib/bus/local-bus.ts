/**
 * The embedded default's bus: no transporter, every service in this process. Publishing an
 * event applies it to every local consumer group at once, so the outbox row stays PENDING (and is
 * retried with backoff, then dead-lettered) until every group has applied it; groups that did
 * already skip it through their inbox.
 */
import {
	type Bus,
	type BusEvent,
	type BusStatus,
	type ConsumerGroup,
	ConsumerNotReadyError,
	type DeadLetter,
	HandlerFailedError,
	type OutboxSource,
} from "./types";

export class LocalBus implements Bus {
	readonly mode = "embedded" as const;
	private readonly groups = new Map<string, ConsumerGroup>();
	private readonly consuming = new Set<string>();
	private readonly inFlight = new Map<string, Set<Promise<unknown>>>();
	private readonly outboxes = new Set<OutboxSource>();

	register(group: ConsumerGroup): void {
		this.groups.set(group.group, group);
	}

	async startConsuming(group: ConsumerGroup): Promise<void> {
		this.groups.set(group.group, group);
		this.consuming.add(group.group);
		// Events that waited for this group go now rather than at the next periodic pass.
		for (const source of this.outboxes) source.kick();
	}

	async stopConsuming(group: ConsumerGroup): Promise<void> {
		this.consuming.delete(group.group);
		await Promise.allSettled([...(this.inFlight.get(group.group) ?? [])]);
	}

	async publish(name: string, event: BusEvent): Promise<void> {
		const targets = [...this.groups.values()].filter(g => g.events.includes(name));
		const waiting = targets.find(g => !this.consuming.has(g.group) || !g.isReady());
		if (waiting) throw new ConsumerNotReadyError(waiting.group);
		const failures: { group: string; error: Error }[] = [];
		for (const group of targets) {
			const delivery = group.consume(name, event);
			const pending = this.track(group.group, delivery);
			try {
				await pending;
			} catch (err) {
				failures.push({ group: group.group, error: err instanceof Error ? err : new Error(String(err)) });
			}
		}
		if (failures.length) throw new HandlerFailedError(failures);
	}

	private track<T>(group: string, p: Promise<T>): Promise<T> {
		let set = this.inFlight.get(group);
		if (!set) this.inFlight.set(group, (set = new Set()));
		const s = set;
		s.add(p);
		return p.finally(() => s.delete(p));
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

	/** In process, dead events stay in their producer's outbox; the bus keeps none of its own. */
	async busDeadLetters(): Promise<DeadLetter[]> {
		return [];
	}

	async replayBusDeadLetter(): Promise<boolean> {
		return false;
	}

	async discardBusDeadLetter(): Promise<boolean> {
		return false;
	}

	async status(): Promise<BusStatus> {
		// In process, what waits for a consumer is what waits in the outboxes (their counts).
		return { mode: this.mode, consumers: [], deadLetters: null };
	}

	acquire(): void {
		// Nothing to open in process.
	}

	async release(): Promise<void> {
		// Nothing to close in process.
	}
}
