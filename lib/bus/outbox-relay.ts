/**
 * The outbox relay of one producing service. Rows are written by `recordEvent` in the
 * transaction of the state change and move through explicit states:
 *
 *   PENDING --published (bus acknowledged / every local group applied)--> PUBLISHED --retention--> deleted
 *   PENDING --failed--> PENDING (attempts + 1, next_attempt_at = now + backoff)
 *   PENDING --a local handler failed for the last allowed attempt--> DEAD --replay--> PENDING
 *
 * A row is written already claimed by the relay of the process that writes it (its claim token,
 * next_attempt_at = now + lease), and after the commit that relay publishes it from memory — no
 * statement to find it again — and marks what it published in one UPDATE per batch, a few
 * milliseconds later. A periodic pass claims whatever is due (a row whose writer died before
 * publishing it, once the lease ran out; a failure's retry) with one statement, `FOR UPDATE SKIP
 * LOCKED` on PostgreSQL, so replicas of a service sharing one database never publish the same row
 * together. A row published twice is harmless: JetStream drops the copy by message id, consumers'
 * inboxes by event id.
 */
import { createHash, randomUUID } from "node:crypto";
import { DataTypes, type Model, type ModelStatic, Op, type Sequelize } from "sequelize";
import type { Params, Part, Sql } from "../db/sql";
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
	/** How long a row this process writes is left alone (it publishes it from memory right after the commit). */
	writtenLeaseMs: number;
	/** This node's id: a restarted node (same id) takes back at once what it wrote before it died. */
	nodeId: string;
	/** Published rows are deleted at most this often. */
	cleanupEveryMs: number;
	/** How long published ids wait to be marked together (one UPDATE for many events). */
	markLingerMs: number;
}

interface Logger {
	info(...args: unknown[]): void;
	warn(...args: unknown[]): void;
	error(...args: unknown[]): void;
}

/** A row as the relay publishes it (RETURNING of a write, or of a claim). */
export interface OutboxRow {
	id: string;
	name: string;
	payload: BusEvent | string;
	attempts?: number;
	occurred_at?: Date | string;
}

interface DeadRow extends OutboxRow {
	status: OutboxState;
	last_error: string | null;
	failed_group: string | null;
	dead_at: Date | string | null;
}

/** What a new event's row holds besides its id, name and payload. */
export interface NewEvent {
	id: string;
	name: string;
	payload: BusEvent;
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
	/** Rows this process writes are claimed with this token from the start: the node's mark, then a random part (36 characters). */
	readonly token: string;
	private readonly nodeMark: string;
	private timer?: NodeJS.Timeout;
	private running?: Promise<void>;
	private again = false;
	private stopped = true;
	private lastCleanup = 0;
	/** Written and committed here, not yet handed to the bus. */
	private readonly queue: OutboxRow[] = [];
	private draining?: Promise<void>;
	/** Handed to the bus, not yet marked PUBLISHED. */
	private toMark: string[] = [];
	private markTimer?: NodeJS.Timeout;
	private marking?: Promise<void>;

	constructor(
		readonly service: string,
		private readonly model: ModelStatic<Model>,
		private readonly sql: Sql,
		private readonly bus: Bus,
		private readonly logger: Logger,
		private readonly opts: RelayOptions,
	) {
		this.nodeMark = createHash("sha256").update(`${opts.nodeId}/${service}`).digest("hex").slice(0, 8);
		this.token = `${this.nodeMark}-${randomUUID().slice(9)}`;
	}

	start(): void {
		this.stopped = false;
		this.timer = setInterval(() => this.kick(), this.opts.pollMs);
		this.timer.unref();
		// What this node wrote before it died is due now, not when its lease runs out; then a pass publishes it.
		const p = this.sql.params();
		this.sql
			.execute(`UPDATE ${OUTBOX_TABLE} SET next_attempt_at = ${p.ts(new Date())} WHERE status = 'PENDING' AND claim_token LIKE ${p.text(`${this.nodeMark}-%`)} RETURNING id`, p.values)
			.catch(err => this.logger.warn(`Outbox relay of '${this.service}' could not take back its rows: ${message(err)}`))
			.finally(() => this.kick());
	}

	/** Stops the timer, waits for the pass in progress and marks what was published (the database closes after this). */
	async stop(): Promise<void> {
		this.stopped = true;
		if (this.timer) clearInterval(this.timer);
		this.timer = undefined;
		await Promise.all([this.running, this.draining]);
		await this.flushMarks();
	}

	/** The columns of a new row: claimed by this relay for the lease, so no other relay takes it meanwhile. */
	claimedColumns(now = new Date()): { status: "PENDING"; attempts: 0; claim_token: string; next_attempt_at: Date; occurred_at: Date } {
		return { status: "PENDING", attempts: 0, claim_token: this.token, next_attempt_at: new Date(now.getTime() + this.opts.writtenLeaseMs), occurred_at: now };
	}

	/** A write part inserting events (already enveloped), claimed by this relay; publish its rows with `written` after the commit. */
	insertPart(p: Params, name: string, events: NewEvent[], requires: string[] = []): Part {
		const now = new Date();
		const c = this.claimedColumns(now);
		const rows = events.map(e => `SELECT ${p.text(e.id)} AS id, ${p.text(e.name)} AS name, ${p.json(e.payload)} AS payload`);
		return {
			name,
			sql: `INSERT INTO ${OUTBOX_TABLE} (id, name, payload, status, attempts, next_attempt_at, claim_token, occurred_at) SELECT e.id, e.name, e.payload, 'PENDING', 0, ${p.ts(c.next_attempt_at)}, ${p.text(this.token)}, ${p.ts(now)} FROM (${rows.join(" UNION ALL ")}) e WHERE {guard} RETURNING id, name, payload`,
			requires,
		};
	}

	/** Rows this process committed: published from memory, in the order given. */
	written(rows: OutboxRow[]): void {
		if (!rows.length || this.stopped) return;
		this.queue.push(...rows);
		this.draining ??= this.drain().finally(() => {
			this.draining = undefined;
		});
	}

	/** Runs a pass now (claims due rows), or right after the one in progress. */
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

	/** Resolves when nothing is being published and every published row is marked (tests, shutdown). */
	async idle(): Promise<void> {
		while (this.running || this.draining || this.marking || this.toMark.length) {
			await Promise.all([this.running, this.draining, this.marking]);
			await this.flushMarks();
		}
	}

	private async drain(): Promise<void> {
		while (this.queue.length && !this.stopped) {
			const batch = this.queue.splice(0, this.opts.batchSize);
			try {
				await this.publishRows(this.token, batch);
			} catch (err) {
				// The database failed while recording a failure; the lease brings the rows back to a pass.
				this.logger.error(`Outbox relay of '${this.service}' could not publish written rows: ${message(err)}`);
			}
		}
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
			const { done, halted } = await this.publishRows(token, rows);
			published += done;
			if (halted || rows.length < this.opts.batchSize) break;
		}
		return published;
	}

	/** Claims and fetches due rows in one statement; another relay's rows (locked, or claimed) are skipped. */
	private async claim(token: string): Promise<OutboxRow[]> {
		const p = this.sql.params();
		const now = new Date();
		const lock = this.sql.dialect === "postgres" ? " FOR UPDATE SKIP LOCKED" : "";
		const rows = await this.sql.execute<OutboxRow>(
			`UPDATE ${OUTBOX_TABLE} SET claim_token = ${p.text(token)}, next_attempt_at = ${p.ts(new Date(now.getTime() + this.opts.leaseMs))}
			 WHERE id IN (SELECT id FROM ${OUTBOX_TABLE} WHERE status = 'PENDING' AND next_attempt_at <= ${p.ts(now)} ORDER BY occurred_at, id LIMIT ${p.int(this.opts.batchSize)}${lock})
			 RETURNING id, name, payload, attempts, occurred_at`,
			p.values,
		);
		const at = (r: OutboxRow) => new Date(r.occurred_at!).getTime();
		return rows.sort((a, b) => at(a) - at(b) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
	}

	/**
	 * Hands rows to the bus: JetStream gets a batch at once (the client pipelines them, in order),
	 * the in-process bus one at a time (its handlers run in the publish). A bus that cannot take
	 * an event leaves it and the rest of the batch for later, without spending an attempt when a
	 * consumer is only starting.
	 */
	private async publishRows(token: string, rows: OutboxRow[]): Promise<{ done: number; halted: boolean }> {
		const results: (unknown | undefined)[] = [];
		if (this.bus.mode === "jetstream") {
			const settled = await Promise.allSettled(
				rows.map(row => {
					faultPoint("outbox.relay.beforePublish");
					return this.bus.publish(row.name, parsePayload(row.payload));
				}),
			);
			for (const s of settled) results.push(s.status === "rejected" ? (s.reason ?? new Error("publish failed")) : undefined);
		} else {
			for (const row of rows) {
				try {
					faultPoint("outbox.relay.beforePublish");
					await this.bus.publish(row.name, parsePayload(row.payload));
					results.push(undefined);
				} catch (err) {
					results.push(err ?? new Error("publish failed"));
					// The bus is down or a consumer is still starting: the rest waits too.
					if (!(err instanceof HandlerFailedError)) break;
				}
			}
		}
		let done = 0;
		const unsent: OutboxRow[] = [];
		const notReady: OutboxRow[] = [];
		let busError: unknown;
		for (let i = 0; i < rows.length; i++) {
			const row = rows[i];
			const err = i < results.length ? results[i] : new ConsumerNotReadyError("(not tried: an earlier event of the batch was not taken)");
			if (err === undefined) {
				done++;
				this.toMark.push(row.id);
				eventMetrics.published.inc({ service: this.service, event: row.name });
				continue;
			}
			if (i < results.length) eventMetrics.publishFailures.inc({ service: this.service, event: row.name });
			if (err instanceof HandlerFailedError) await this.failed(token, row, err);
			else if (err instanceof ConsumerNotReadyError) notReady.push(row);
			else {
				busError ??= err;
				unsent.push(row);
			}
		}
		if (unsent.length) {
			// The bus is unreachable: not the events' fault, so they wait with backoff (never DEAD in a cluster).
			const attempts = Math.max(...unsent.map(r => r.attempts ?? 0)) + 1;
			const delay = retryDelay(attempts, this.opts.policy);
			this.logger.warn(`Outbox relay of '${this.service}' cannot publish ${unsent.length} events (again in ${delay} ms): ${message(busError)}`);
			await this.model.update(
				{ attempts: this.model.sequelize!.literal("attempts + 1"), last_error: message(busError), claim_token: null, next_attempt_at: new Date(Date.now() + delay) },
				{ where: { id: unsent.map(r => r.id), claim_token: token } },
			);
		}
		// A consumer still starting: no attempt spent, tried again at the next pass.
		if (notReady.length) await this.release(token, notReady, this.opts.pollMs);
		const halted = unsent.length > 0 || notReady.length > 0;
		this.scheduleMarks();
		return { done, halted };
	}

	private scheduleMarks(): void {
		if (!this.toMark.length || this.markTimer) return;
		if (this.toMark.length >= this.opts.batchSize) {
			void this.flushMarks();
			return;
		}
		this.markTimer = setTimeout(() => void this.flushMarks(), this.opts.markLingerMs);
		this.markTimer.unref();
	}

	/** Marks every published row PUBLISHED in one statement (a row whose mark is lost is published again: harmless). */
	private async flushMarks(): Promise<void> {
		if (this.markTimer) clearTimeout(this.markTimer);
		this.markTimer = undefined;
		await this.marking;
		if (!this.toMark.length) return;
		const ids = this.toMark;
		this.toMark = [];
		this.marking = (async () => {
			try {
				const p = this.sql.params();
				await this.sql.execute(
					`UPDATE ${OUTBOX_TABLE} SET status = 'PUBLISHED', published_at = ${p.ts(new Date())}, claim_token = NULL, last_error = NULL, failed_group = NULL WHERE status = 'PENDING' AND ${p.oneOf("id", ids)} RETURNING 1`,
					p.values,
				);
			} catch (err) {
				this.logger.warn(`Outbox relay of '${this.service}' could not mark ${ids.length} published rows; they go out again after the lease: ${message(err)}`);
			}
		})().finally(() => {
			this.marking = undefined;
		});
		await this.marking;
	}

	/** A local handler failed: back off, or dead-letter after the last allowed attempt. */
	private async failed(token: string, row: OutboxRow, err: HandlerFailedError): Promise<void> {
		const attempts = (row.attempts ?? 0) + 1;
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
		const rows = (await this.model.findAll({ where: { status: "DEAD" }, order: [["dead_at", "ASC"]], limit, raw: true })) as unknown as DeadRow[];
		return rows.map(r => ({
			id: `outbox:${this.service}:${r.id}`,
			event: r.name,
			eventId: r.id,
			group: r.failed_group,
			attempts: r.attempts ?? 0,
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
