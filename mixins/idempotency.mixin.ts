/**
 * Idempotent commands — the one mechanism of the platform (docs/CONVENTIONS.md, "Idempotency").
 *
 * A command names a key: `(scope, key)`, e.g. `("payments", "<sagaId>:authorize")`. Its record
 * holds a hash of the request and the answer, and is written in the same database transaction —
 * on PostgreSQL the same statement — as the command's effect and its outbox rows. The key's primary
 * key decides between concurrent callers: the second one's write fails on it (after waiting for
 * the first one's to commit) and that caller answers with what the first stored. Nothing is written
 * before the effect, so a process that dies leaves either the whole command or nothing: a retry
 * finds the committed answer, or runs the command again.
 *
 * - same key, same request → the stored answer, or the stored refusal (a client error), again
 * - same key, another request → 422 IDEMPOTENCY_KEY_REUSED
 * - a refusal thrown while planning or a guard that finds the effect impossible stores nothing:
 *   the command took no effect and may be sent again
 * - an answer may be left pending (`{ pending: ref }`) when it is known only later (a checkout's
 *   answer is the order once its saga settles); the service decides what a repeat gets meanwhile
 * - a compensation fences the key of the step it undoes (`fencePart`): a late call of that step
 *   finds the fence and is refused, so a compensation that overtook its step stays in force.
 *
 * Records are kept `idempotencyRetentionHours` (≥ 24 h, API.md); pending ones until answered.
 */
import { createHash } from "node:crypto";
import { Errors, type Service, type ServiceSchema } from "moleculer";
import { UnprocessableError } from "../lib/errors";
import { faultPoint } from "../lib/faults";
import { type Params, type Part, type Runner, recording, violationOf } from "../lib/db/sql";
import type { DbMethods, Migration } from "./db.mixin";
import { jsonColumn } from "./db.mixin";

export const IDEMPOTENCY_TABLE = "idempotency_keys";

/** Applied by earlier versions; the records it made are moved by i7-001 below. */
const legacy: Migration = {
	name: "idempotency-001",
	async up(qi, T) {
		await qi.createTable("idempotency_records", {
			scope: { type: T.STRING(100), primaryKey: true },
			key: { type: T.STRING(255), primaryKey: true },
			request_hash: { type: T.STRING(64), allowNull: false },
			state: { type: T.STRING(16), allowNull: false },
			response: { type: T.JSON, allowNull: true },
			error: { type: T.JSON, allowNull: true },
			created_at: { type: T.DATE(3), allowNull: false },
		});
		await qi.addIndex("idempotency_records", ["created_at"]);
	},
};

/**
 * One key table for every command. `code` is null while the answer is pending, 0 for an answer,
 * or the status of a stored refusal. Checkout answers of the old table carry over (same scope,
 * same request hash); the internal commands' records do not — their scopes and requests changed,
 * so drain running sagas before upgrading — and in-flight markers never do (no record may block a retry).
 */
const keys: Migration = {
	name: "i7-001-idempotency-keys",
	async up(qi, T) {
		await qi.createTable(IDEMPOTENCY_TABLE, {
			scope: { type: T.STRING(100), primaryKey: true },
			key: { type: T.STRING(255), primaryKey: true },
			request_hash: { type: T.STRING(64), allowNull: false },
			code: { type: T.INTEGER, allowNull: true },
			answer: { type: T.JSON, allowNull: true },
			created_at: { type: T.DATE(3), allowNull: false },
		});
		await qi.addIndex(IDEMPOTENCY_TABLE, ["created_at"], { name: "idempotency_keys_created" });
		await qi.sequelize.query(
			`INSERT INTO ${IDEMPOTENCY_TABLE} (scope, key, request_hash, code, answer, created_at)
			 SELECT scope, key, request_hash, CASE WHEN state = 'DONE' THEN 0 ELSE 409 END, CASE WHEN state = 'DONE' THEN response ELSE error END, created_at
			 FROM idempotency_records WHERE state IN ('DONE', 'FAILED') AND scope LIKE 'checkout:%'`,
		);
		await qi.dropTable("idempotency_records");
	},
};

/** Spread into a service's migrations (where `idempotencyMigrations` stood before, or at the end). */
export const idempotencyMigrations: Migration[] = [legacy, keys];

export interface Command {
	/** Where the key is unique: a service's commands share one scope (a key names one operation), a customer's checkouts another. */
	scope: string;
	key: string;
	/** What must match for a repeat to be the same request (the key itself excluded; the operation included). */
	request: unknown;
	/** The operation, for fault points and logs (`command.<name>.before|after`). */
	name?: string;
}

/** What the key's record says: an answer, a refusal to repeat, or an answer still to come. */
export type Outcome<A> = { answer: A } | { refusal: Errors.MoleculerError } | { pending: unknown };

export interface Stored {
	code: number | null;
	answer: unknown;
}

export interface Plan<A> {
	parts: Part[];
	outcome: Outcome<A>;
	/**
	 * Parts whose rows show that the effect applied. When one returns nothing the key is not
	 * recorded: the command was refused (`refused()`), unless the key has a record (a repeat).
	 */
	requires?: string[];
	/** Instead of `requires`: the SQL condition under which the key is recorded (a dialect's own text). */
	keyWhen?: string;
	refused?: () => Error;
	/** After the commit, with every part's rows (before the answer goes back). */
	committed?: (rows: Record<string, any[]>) => void | Promise<void>;
	/** What the call returns when its write took effect, if not the stored answer (a pending one's caller carries on). */
	result?: unknown;
	/**
	 * PostgreSQL only: the answer as an SQL expression over the write's parts (a json value), for a
	 * write that decides part of its answer itself (which warehouse a reservation took). It is what
	 * the key's record stores and what the call returns; `outcome` must then be `{ answer }`.
	 */
	answerSql?: string;
	/**
	 * An optimistic write that may not apply (its parts' own condition was false): called with its
	 * rows when the key was not recorded, and `plan` runs once more (not counted as an attempt) for
	 * the general write, which may use what these rows show. No record lookup in between: the next
	 * write finds a record taken meanwhile by its unique key.
	 */
	skipped?: (rows: Record<string, any[]>) => void;
}

export interface IdempotencyMethods {
	command<A>(cmd: Command, plan: (p: Params) => Promise<Plan<A>>, opts?: CommandOptions<A>): Promise<A>;
	commandTx<A>(cmd: Command, fn: (r: Runner) => Promise<Outcome<A>>, opts?: CommandOptions<A> & { fence?: Fence }): Promise<A>;
	storedOf(cmd: Command): Promise<Stored | undefined>;
	keyPart(p: Params, cmd: Command, outcome: Outcome<unknown>, requires?: string[], when?: string, answerSql?: string): Part;
	fencePart(p: Params, fence: Fence): Part;
	answerOf<A>(stored: Stored): A;
	settlePending(cmd: Command, outcome: Outcome<unknown>): Promise<Stored>;
	settlePart(p: Params, cmd: Pick<Command, "scope" | "key">, outcome: Outcome<unknown>, requires?: string[]): Part;
	isKeyConflict(err: unknown): boolean;
}

export interface CommandOptions<A> {
	/** What a repeat gets while the first call's answer is pending (default: 409 IDEMPOTENCY_KEY_IN_FLIGHT). */
	pending?: (ref: unknown, cmd: Command) => Promise<A>;
	/** Runs for every answer given from the record (a repeat), e.g. to send an external effect again. */
	replayed?: (answer: A) => Promise<void>;
	/**
	 * The planned write did not apply because the key already has a record (a repeat, or a fence):
	 * undo what planning did outside the database (e.g. an authorisation this call made).
	 */
	lost?: (stored: Stored) => Promise<void>;
}

/** The key of a step that a compensation undoes: fenced so that a late call of the step is refused. */
export interface Fence {
	scope: string;
	key: string;
}

/** A canonical hash of the request: key order does not matter. */
export function requestHash(params: unknown): string {
	const canonical = (v: unknown): unknown =>
		Array.isArray(v) ? v.map(canonical) : v && typeof v === "object" ? Object.fromEntries(Object.keys(v).sort().map(k => [k, canonical((v as any)[k])])) : v;
	return createHash("sha256").update(JSON.stringify(canonical(params) ?? null)).digest("hex");
}

/** The refusal a late call of a fenced step gets: it must not take effect any more. */
const FENCED = { message: "A compensation undid this step before it ran", code: 409, type: "STEP_COMPENSATED", name: "ConflictError" };

function refusalRecord(err: Errors.MoleculerError) {
	return { message: err.message, type: err.type, data: err.data ?? null, name: err.name };
}

function storedRefusal(code: number, a: { message?: string; type?: string; data?: unknown; name?: string } | null): Errors.MoleculerClientError {
	const err = new Errors.MoleculerClientError(a?.message ?? "Refused", code, a?.type ?? "REFUSED", a?.data ?? undefined);
	if (a?.name) err.name = a.name;
	return err;
}

function outcomeColumns(outcome: Outcome<unknown>): { code: number | null; answer: unknown } {
	if ("answer" in outcome) return { code: 0, answer: outcome.answer ?? null };
	if ("refusal" in outcome) return { code: outcome.refusal.code, answer: refusalRecord(outcome.refusal) };
	return { code: null, answer: outcome.pending ?? null };
}

type Svc = Service & DbMethods & IdempotencyMethods & { [k: string]: any };

export const IdempotencyMixin = {
	settings: { idempotencyRetentionHours: 48 },

	methods: {
		/**
		 * Runs a command whose effect is one write (`Plan.parts`): the key's record joins it, so on
		 * PostgreSQL the command is a single statement. `plan` may read and call out first (a payment
		 * provider honouring the same key); a repeat does that work again and then finds the record.
		 */
		async command<A>(this: Svc, cmd: Command, plan: (p: Params) => Promise<Plan<A>>, opts: CommandOptions<A> = {}): Promise<A> {
			let optimisticDone = false;
			for (let attempt = 1; ; attempt++) {
				const p = this.sql.params();
				let planned: Plan<A>;
				try {
					planned = await plan(p);
				} catch (err) {
					// A refusal while planning stores nothing; but a repeat of a command that did take effect answers as then.
					const stored = (err as { code?: number })?.code !== undefined ? await this.storedOf(cmd) : undefined;
					if (stored) return this.repeat(cmd, stored, opts);
					throw err;
				}
				const key = this.keyPart(p, cmd, planned.outcome, planned.requires, planned.keyWhen, planned.answerSql);
				let rows: Record<string, any[]>;
				try {
					faultPoint(`command.${cmd.name ?? cmd.scope}.before`);
					rows = await this.sql.write([...planned.parts, key], p);
				} catch (err) {
					// The key, or a row of the effect, is taken: by this very command before (or concurrently)?
					if (violationOf(err)?.kind !== "unique") throw err;
					const stored = await this.storedOf(cmd);
					if (!stored) throw err;
					await opts.lost?.(stored);
					return this.repeat(cmd, stored, opts);
				}
				if (!rows[key.name].length) {
					if (planned.skipped && !optimisticDone) {
						optimisticDone = true;
						planned.skipped(rows);
						attempt--;
						continue;
					}
					const stored = await this.storedOf(cmd);
					if (stored) {
						await opts.lost?.(stored);
						return this.repeat(cmd, stored, opts);
					}
					// The statement saw the data as it was when it began; a write that committed while it
					// waited for a lock may have done this very thing (under another key): plan once more.
					if (attempt < 2) continue;
					throw planned.refused?.() ?? new Errors.MoleculerClientError("The command cannot take effect", 409, "REFUSED");
				}
				faultPoint(`command.${cmd.name ?? cmd.scope}.after`);
				// Events the write recorded go out now, from memory (mixins/outbox.mixin.ts).
				this.outboxWritten?.(rows);
				await planned.committed?.(rows);
				if ("result" in planned) return planned.result as A;
				if (planned.answerSql !== undefined) return jsonColumn(rows[key.name][0].answer, null) as A;
				return this.answerOf<A>(outcomeColumns(planned.outcome));
			}
		},

		/**
		 * A command of several statements in one transaction (compensations and other rare paths):
		 * the key's record is written first, so a concurrent call with the same key waits for this
		 * one and then answers with its record; `fn`'s error rolls everything back.
		 */
		async commandTx<A>(this: Svc, cmd: Command, fn: (r: Runner) => Promise<Outcome<A>>, opts: CommandOptions<A> & { fence?: Fence } = {}): Promise<A> {
			let written: Record<string, any[]>[] = [];
			const run = await this.sql.transaction(async (tx: Runner) => {
				// Writes inside `fn` are recorded so that their events go out after the commit.
				const { runner: r, writes } = recording(tx);
				written = writes;
				const p = this.sql.params();
				const hash = requestHash(cmd.request);
				const claimed = await r.query(
					`INSERT INTO ${IDEMPOTENCY_TABLE} (scope, key, request_hash, code, answer, created_at) VALUES (${p.text(cmd.scope)}, ${p.text(cmd.key)}, ${p.text(hash)}, NULL, NULL, ${p.ts(new Date())}) ON CONFLICT DO NOTHING RETURNING key`,
					p.values,
				);
				if (!claimed.length) return { repeat: true as const };
				if (opts.fence) {
					const f = this.sql.params();
					const fence = this.fencePart(f, opts.fence);
					await r.query(fence.sql.replaceAll("{guard}", "1 = 1"), f.values);
				}
				faultPoint(`command.${cmd.name ?? cmd.scope}.before`);
				const outcome = await fn(r);
				const { code, answer } = outcomeColumns(outcome);
				const u = this.sql.params();
				await r.query(`UPDATE ${IDEMPOTENCY_TABLE} SET code = ${u.add(code)}, answer = ${u.json(answer)} WHERE scope = ${u.text(cmd.scope)} AND key = ${u.text(cmd.key)} RETURNING key`, u.values);
				return { outcome };
			});
			if ("repeat" in run) return this.repeat(cmd, (await this.storedOf(cmd))!, opts);
			faultPoint(`command.${cmd.name ?? cmd.scope}.after`);
			for (const rows of written) this.outboxWritten?.(rows);
			return this.answerOf<A>(outcomeColumns(run.outcome));
		},

		/** The key's record, checked against the request: another request with this key is refused with 422. */
		async storedOf(this: Svc, cmd: Command): Promise<Stored | undefined> {
			const [row] = await this.sql.select<{ request_hash: string; code: number | null; answer: unknown }>(
				`SELECT request_hash, code, answer FROM ${IDEMPOTENCY_TABLE} WHERE scope = $1 AND key = $2`,
				[cmd.scope, cmd.key],
			);
			if (!row) return undefined;
			// A fence matches any request: whatever the late call asks, it must not take effect.
			if (row.request_hash !== "" && row.request_hash !== requestHash(cmd.request)) {
				throw new UnprocessableError("This idempotency key was used with a different request", "IDEMPOTENCY_KEY_REUSED", [{ field: "idempotencyKey", message: "already used for another request" }]);
			}
			return { code: row.code === null ? null : Number(row.code), answer: jsonColumn(row.answer, null) };
		},

		/** The INSERT of the key's record for a `write`; a second insert of the key fails the whole write. */
		keyPart(this: Svc, p: Params, cmd: Command, outcome: Outcome<unknown>, requires: string[] = [], when?: string, answerSql?: string): Part {
			const { code, answer } = outcomeColumns(outcome);
			if (answerSql !== undefined && this.sql.dialect !== "postgres") throw new Error("answerSql is for PostgreSQL only");
			return {
				name: "idem_key",
				sql: `INSERT INTO ${IDEMPOTENCY_TABLE} (scope, key, request_hash, code, answer, created_at) SELECT ${p.text(cmd.scope)}, ${p.text(cmd.key)}, ${p.text(requestHash(cmd.request))}, ${p.int(code)}, ${answerSql ?? p.json(answer)}, ${p.ts(new Date())} WHERE ${when ?? "{guard}"} RETURNING key${answerSql !== undefined ? ", answer" : ""}`,
				requires: when ? [] : requires,
			};
		},

		/** Claims a step's key for the compensation undoing it (nothing happens if the step ran: its record is there). */
		fencePart(this: Svc, p: Params, fence: Fence): Part {
			return {
				name: "idem_fence",
				sql: `INSERT INTO ${IDEMPOTENCY_TABLE} (scope, key, request_hash, code, answer, created_at) VALUES (${p.text(fence.scope)}, ${p.text(fence.key)}, '', ${p.int(FENCED.code)}, ${p.json({ message: FENCED.message, type: FENCED.type, name: FENCED.name, data: null })}, ${p.ts(new Date())}) ON CONFLICT DO NOTHING RETURNING key`,
			};
		},

		/** The answer a record stands for, or the refusal it stores, thrown. */
		answerOf<A>(this: Svc, stored: Stored): A {
			if (stored.code === 0) return stored.answer as A;
			if (stored.code !== null) throw storedRefusal(stored.code, stored.answer as any);
			throw new Errors.MoleculerClientError("A request with this key is still being processed", 409, "IDEMPOTENCY_KEY_IN_FLIGHT");
		},

		/** Gives a pending record its answer, unless someone else did first; returns what the record now holds. */
		async settlePending(this: Svc, cmd: Command, outcome: Outcome<unknown>): Promise<Stored> {
			const { code, answer } = outcomeColumns(outcome);
			const p = this.sql.params();
			const [row] = await this.sql.execute(
				`UPDATE ${IDEMPOTENCY_TABLE} SET code = ${p.int(code)}, answer = ${p.json(answer)} WHERE scope = ${p.text(cmd.scope)} AND key = ${p.text(cmd.key)} AND code IS NULL RETURNING code`,
				p.values,
			);
			return row ? { code, answer } : (await this.storedOf(cmd))!;
		},

		/** A part giving a pending record its answer in someone else's write (a saga's last one). */
		settlePart(this: Svc, p: Params, cmd: Pick<Command, "scope" | "key">, outcome: Outcome<unknown>, requires: string[] = []): Part {
			const { code, answer } = outcomeColumns(outcome);
			return {
				name: "idem_settle",
				sql: `UPDATE ${IDEMPOTENCY_TABLE} SET code = ${p.int(code)}, answer = ${p.json(answer)} WHERE scope = ${p.text(cmd.scope)} AND key = ${p.text(cmd.key)} AND code IS NULL AND {guard} RETURNING key`,
				requires,
			};
		},

		/** A repeat: the stored answer (and `replayed`), the pending policy, or the stored refusal. */
		async repeat<A>(this: Svc, cmd: Command, stored: Stored, opts: CommandOptions<A>): Promise<A> {
			if (stored.code === null) {
				if (opts.pending) return opts.pending(stored.answer, cmd);
				return this.answerOf<A>(stored);
			}
			const answer = this.answerOf<A>(stored);
			await opts.replayed?.(answer);
			return answer;
		},

		isKeyConflict(err: unknown): boolean {
			const v = violationOf(err);
			return v?.kind === "unique" && v.target === IDEMPOTENCY_TABLE;
		},

		/** Deletes answered records past the retention period (pending ones wait for their answer). */
		async sweepIdempotency(this: Svc): Promise<number> {
			const p = this.sql.params();
			const cutoff = new Date(Date.now() - this.settings.idempotencyRetentionHours * 3_600_000);
			const rows = await this.sql.execute(`DELETE FROM ${IDEMPOTENCY_TABLE} WHERE created_at < ${p.ts(cutoff)} AND code IS NOT NULL RETURNING 1`, p.values);
			return rows.length;
		},
	},

	started(this: Svc) {
		this._idempotencySweep = setInterval(() => {
			this.sweepIdempotency().catch((err: Error) => this.logger.warn("Idempotency sweep failed; will retry", err.message));
		}, 3_600_000);
		this._idempotencySweep.unref();
	},

	stopped(this: Svc) {
		clearInterval(this._idempotencySweep);
	},
} as unknown as Partial<ServiceSchema>;
