/**
 * The outbox relay of one producing service. Rows are written by `recordEvent` in the
 * transaction of the state change and move through explicit states:
 *
 *   PENDING --published (bus acknowledged / every local group applied)--> PUBLISHED --retention--> deleted
 *   PENDING --failed--> PENDING (attempts + 1, next_attempt_at = now + backoff)
 *   PENDING --a local handler failed for the last allowed attempt--> DEAD --replay--> PENDING
 *
 * A pass claims due rows with a lease (claim_token, next_attempt_at = now + lease), so replicas of
 * a service sharing one database do not publish the same rows together; a relay that dies holding
 * a claim leaves the rows to the next pass once the lease has run out. A row published twice is
 * harmless: JetStream drops the copy by message id, consumers' inboxes by event id.
 */
import { randomUUID } from "node:crypto";
import { DataTypes, type Model, type ModelStatic, Op, type Sequelize } from "sequelize";
import { faultPoint } from "../faults";
import { eventMetrics } from "./metrics";
import { type RetryPolicy, retryDelay } from "./policy";
import { type Bus, type BusEvent, ConsumerNotReadyError, type DeadLetter, HandlerFailedError, type OutboxSource } from "./types";

export const OUTBOX_TABLE = "outbox_events";
export type OutboxState = "PENDING" | "PUBLISHED" | "DEAD";

export interface RelayOptions {
	policy: RetryPolicy;
	pollMs: number;
	retentionMs: number;
	batchSize: number;
	/** How long a claimed row is left alone by other relays. */
	leaseMs: number;
	/** Published rows are deleted at most this often. */
	cleanupEveryMs: number;
}

interface Logger {
	info(...args: unknown[]): void;
	warn(...args: unknown[]): void;
	error(...args: unknown[]): void;
}

interface OutboxRow {
	id: string;
	name: string;
	payload: BusEvent | string;
	status: OutboxState;
	attempts: number;
	last_error: string | null;
	failed_group: string | null;
	dead_at: Date | string | null;
}

export function defineOutboxModel(sequelize: Sequelize): ModelStatic<Model> {
	if (sequelize.isDefined("OutboxEvent")) return sequelize.model("OutboxEvent");
	return sequelize.define(
		"OutboxEvent",
		{
			id: { type: DataTypes.STRING(36), primaryKey: true },
			name: DataTypes.STRING(120),
			payload: DataTypes.JSON,
			status: DataTypes.STRING(16),
			attempts: DataTypes.INTEGER,
			next_attempt_at: DataTypes.DATE(3),
			claim_token: DataTypes.STRING(36),
			last_error: DataTypes.TEXT,
			failed_group: DataTypes.STRING(64),
			occurred_at: DataTypes.DATE(3),
			published_at: DataTypes.DATE(3),
			dead_at: DataTypes.DATE(3),
		},
		{ tableName: OUTBOX_TABLE, timestamps: false },
	);
}

function parsePayload(p: BusEvent | string): BusEvent {
	return typeof p === "string" ? (JSON.parse(p) as BusEvent) : p;
}

function iso(d: Date | string | null): string | null {
	return d === null ? null : new Date(d).toISOString();
}

function message(err: unknown): string {
	return (err instanceof Error ? err.message : String(err)).slice(0, 2000);
}

export class OutboxRelay implements OutboxSource {
	private timer?: NodeJS.Timeout;
	private running?: Promise<void>;
	private again = false;
	private stopped = true;
	private lastCleanup = 0;

	constructor(
		readonly service: string,
		private readonly model: ModelStatic<Model>,
		private readonly bus: Bus,
		private readonly logger: Logger,
		private readonly opts: RelayOptions,
	) {}

	start(): void {
		this.stopped = false;
		this.timer = setInterval(() => this.kick(), this.opts.pollMs);
		this.timer.unref();
		// Whatever a crash left behind goes out now, not at the first tick.
		this.kick();
	}

	/** Stops the timer and waits for the pass in progress (the database closes after this). */
	async stop(): Promise<void> {
		this.stopped = true;
		if (this.timer) clearInterval(this.timer);
		this.timer = undefined;
		await this.running;
	}

	/** Runs a pass now, or right after the one in progress. */
	kick(): void {
		if (this.stopped) return;
		if (this.running) {
			this.again = true;
			return;
		}
		this.running = this.loop().finally(() => {
			this.running = undefined;
		});
	}

	/** Resolves when no pass is running (tests, shutdown). */
	idle(): Promise<void> {
		return this.running ?? Promise.resolve();
	}

	private async loop(): Promise<void> {
		do {
			this.again = false;
			try {
				await this.pass();
				if (Date.now() - this.lastCleanup >= this.opts.cleanupEveryMs) {
					this.lastCleanup = Date.now();
					await this.cleanup();
				}
			} catch (err) {
				// The database itself failed (e.g. it is closing); the next tick tries again.
				this.logger.error(`Outbox relay pass of '${this.service}' failed: ${message(err)}`);
			}
		} while (this.again && !this.stopped);
	}

	/** Publishes every due row; returns how many were published. */
	async pass(): Promise<number> {
		let published = 0;
		while (!this.stopped) {
			const token = randomUUID();
			const rows = await this.claim(token);
			if (!rows.length) break;
			const { done, halted } = await this.publishClaimed(token, rows);
			published += done;
			if (halted) break;
		}
		return published;
	}

	private async claim(token: string): Promise<OutboxRow[]> {
		const now = new Date();
		const due = { status: "PENDING", next_attempt_at: { [Op.lte]: now } };
		const order: [string, string][] = [
			["occurred_at", "ASC"],
			["id", "ASC"],
		];
		const candidates = (await this.model.findAll({ attributes: ["id"], where: due, order, limit: this.opts.batchSize, raw: true })) as unknown as { id: string }[];
		if (!candidates.length) return [];
		// The condition is checked again by the UPDATE: a row another relay claimed meanwhile is skipped.
		await this.model.update(
			{ claim_token: token, next_attempt_at: new Date(now.getTime() + this.opts.leaseMs) },
			{ where: { ...due, id: candidates.map(c => c.id) } },
		);
		return (await this.model.findAll({ where: { claim_token: token, status: "PENDING" }, order, raw: true })) as unknown as OutboxRow[];
	}

	private async publishClaimed(token: string, rows: OutboxRow[]): Promise<{ done: number; halted: boolean }> {
		const published: string[] = [];
		let halted = false;
		for (let i = 0; i < rows.length; i++) {
			const row = rows[i];
			try {
				faultPoint("outbox.relay.beforePublish");
				await this.bus.publish(row.name, parsePayload(row.payload));
				published.push(row.id);
				eventMetrics.published.inc({ service: this.service, event: row.name });
			} catch (err) {
				eventMetrics.publishFailures.inc({ service: this.service, event: row.name });
				if (err instanceof HandlerFailedError) {
					await this.failed(token, row, err);
					continue;
				}
				// The bus is down or a consumer is still starting: leave this row and the rest of the
				// batch for later without spending an attempt on a consumer that never ran.
				const notReady = err instanceof ConsumerNotReadyError;
				if (!notReady) this.logger.warn(`Outbox relay of '${this.service}' cannot publish ${row.name} ${row.id}: ${message(err)}`);
				const attempts = notReady ? row.attempts : row.attempts + 1;
				const delay = notReady ? this.opts.pollMs : retryDelay(attempts, this.opts.policy);
				await this.model.update(
					{ attempts, last_error: message(err), claim_token: null, next_attempt_at: new Date(Date.now() + delay) },
					{ where: { id: row.id, claim_token: token } },
				);
				await this.release(token, rows.slice(i + 1), delay);
				halted = true;
				break;
			}
		}
		if (published.length) {
			await this.model.update(
				{ status: "PUBLISHED", published_at: new Date(), claim_token: null, last_error: null, failed_group: null },
				{ where: { id: published, claim_token: token } },
			);
		}
		return { done: published.length, halted };
	}

	/** A local handler failed: back off, or dead-letter after the last allowed attempt. */
	private async failed(token: string, row: OutboxRow, err: HandlerFailedError): Promise<void> {
		const attempts = row.attempts + 1;
		const group = err.failures.map(f => f.group).join(",").slice(0, 64);
		const common = { attempts, last_error: message(err), failed_group: group, claim_token: null };
		if (attempts >= this.opts.policy.maxAttempts) {
			await this.model.update({ ...common, status: "DEAD", dead_at: new Date() }, { where: { id: row.id, claim_token: token } });
			for (const f of err.failures) eventMetrics.deadLettered.inc({ group: f.group, event: row.name });
			this.logger.error(`Event ${row.name} ${row.id} dead-lettered after ${attempts} attempts (${err.message}); replay it with $events.replay`);
			return;
		}
		const delay = retryDelay(attempts, this.opts.policy);
		await this.model.update({ ...common, next_attempt_at: new Date(Date.now() + delay) }, { where: { id: row.id, claim_token: token } });
		this.logger.warn(`Event ${row.name} ${row.id} failed in ${group} (attempt ${attempts}/${this.opts.policy.maxAttempts}), again in ${delay} ms: ${err.message}`);
	}

	private async release(token: string, rows: OutboxRow[], delay: number): Promise<void> {
		if (!rows.length) return;
		await this.model.update(
			{ claim_token: null, next_attempt_at: new Date(Date.now() + delay) },
			{ where: { id: rows.map(r => r.id), claim_token: token } },
		);
	}

	/** Deletes rows published before the retention period; returns how many. */
	async cleanup(now = new Date()): Promise<number> {
		return this.model.destroy({ where: { status: "PUBLISHED", published_at: { [Op.lt]: new Date(now.getTime() - this.opts.retentionMs) } } });
	}

	async deadLetters(limit: number): Promise<DeadLetter[]> {
		const rows = (await this.model.findAll({ where: { status: "DEAD" }, order: [["dead_at", "ASC"]], limit, raw: true })) as unknown as OutboxRow[];
		return rows.map(r => ({
			id: `outbox:${this.service}:${r.id}`,
			event: r.name,
			eventId: r.id,
			group: r.failed_group,
			attempts: r.attempts,
			error: r.last_error,
			deadAt: iso(r.dead_at),
			payload: parsePayload(r.payload),
		}));
	}

	async replay(eventId: string): Promise<boolean> {
		const [n] = await this.model.update(
			{ status: "PENDING", attempts: 0, next_attempt_at: new Date(), dead_at: null, claim_token: null },
			{ where: { id: eventId, status: "DEAD" } },
		);
		if (!n) return false;
		const row = (await this.model.findByPk(eventId, { attributes: ["name"], raw: true })) as unknown as { name: string } | null;
		eventMetrics.replayed.inc({ event: row?.name ?? "unknown" });
		this.kick();
		return true;
	}

	async discard(eventId: string): Promise<boolean> {
		return (await this.model.destroy({ where: { id: eventId, status: "DEAD" } })) > 0;
	}

	async counts(): Promise<Record<string, number>> {
		const rows = (await this.model.findAll({
			attributes: ["status", [this.model.sequelize!.fn("COUNT", this.model.sequelize!.col("id")), "n"]],
			group: ["status"],
			raw: true,
		})) as unknown as { status: string; n: number | string }[];
		const out: Record<string, number> = { PENDING: 0, PUBLISHED: 0, DEAD: 0 };
		for (const r of rows) out[r.status] = Number(r.n);
		return out;
	}
}
