/**
 * Plain parameterised SQL on a service's own Sequelize connection pool, for the command path.
 * A statement through a Sequelize model costs about four times the Node CPU of the same statement
 * sent as text with bind parameters, so commands write with this and keep the models for
 * migrations and ordinary reads.
 *
 * - `select(sql, values)`: one read (`$1`, `$2`, … placeholders on both dialects).
 * - `execute(sql, values)`: one autocommitted write.
 * - `write(parts, params)`: several statements that take effect together or not at all. On
 *   PostgreSQL they are sent as ONE statement, each part a data-modifying CTE; on SQLite (which has
 *   none) they run in order inside one transaction. A part may require earlier parts to have
 *   returned rows: `{guard}` in its text becomes `EXISTS (SELECT 1 FROM <part>) AND …` on
 *   PostgreSQL, and on SQLite the part is skipped when a required part returned nothing. Every
 *   part returns rows (`RETURNING …`); the answer maps part names to their rows.
 * - `transaction(fn)`: a multi-statement transaction for the rare paths (compensations, sweeps).
 *
 * On SQLite every write goes through Sequelize's managed transactions, which this process queues
 * (one writer per file, mixins/db.mixin.ts), so the raw statements never race the models.
 */
import { createHash } from "node:crypto";
import type { Sequelize, Transaction } from "sequelize";

export type Dialect = "postgres" | "sqlite";

/** A statement of a `write`, run in the given order. */
export interface Part {
	/** Names the part: its rows in the answer, its CTE on PostgreSQL. Lower-case letters, digits, _. */
	name: string;
	/** One INSERT/UPDATE/DELETE … RETURNING, or a SELECT; `{guard}` where the requirement goes. */
	sql: string;
	/** Parts that must have returned at least one row for this one to apply. */
	requires?: string[];
}

/** Collects bind values for one statement (or one `write`) and hands out their placeholders. */
export class Params {
	readonly values: unknown[] = [];

	constructor(readonly dialect: Dialect) {}

	/** A value whose type the statement's context decides (a column compared or assigned). */
	add(value: unknown): string {
		this.values.push(value === undefined ? null : value);
		return `$${this.values.length}`;
	}

	/** Text; typed explicitly on PostgreSQL, which cannot infer a parameter's type in a SELECT list or a function argument. */
	text(value: string | null): string {
		const placeholder = this.add(value);
		return this.dialect === "postgres" ? `CAST(${placeholder} AS text)` : placeholder;
	}

	/**
	 * `column` is one of `values` (texts, at least one). On PostgreSQL one array parameter, so the
	 * statement's text (and its prepared statement, planned once per connection) is the same
	 * whatever the number of values; SQLite, which has no arrays, gets one placeholder per value.
	 */
	oneOf(column: string, values: readonly string[]): string {
		if (this.dialect === "postgres") return `${column} = ANY(CAST(${this.add(values)} AS text[]))`;
		return `${column} IN (${values.map(v => this.add(v)).join(", ")})`;
	}

	int(value: number | null): string {
		return `CAST(${this.add(value === null ? null : Math.trunc(value))} AS INTEGER)`;
	}

	/** A JSON document (stored as `json` on PostgreSQL, as text on SQLite). */
	json(value: unknown): string {
		const placeholder = this.add(value === null || value === undefined ? null : JSON.stringify(value));
		return this.dialect === "postgres" ? `CAST(${placeholder} AS json)` : placeholder;
	}

	/** A point in time, in the format each dialect's DATE(3) columns already hold. */
	ts(value: Date): string {
		// ISO text with its Z: node-postgres would format a Date in local time, field by field, per call.
		if (this.dialect === "postgres") return `CAST(${this.add(value.toISOString())} AS timestamptz)`;
		return this.add(sqliteDate(value));
	}
}

/** How Sequelize writes a DATE on SQLite (`YYYY-MM-DD HH:mm:ss.SSS +00:00`): text that sorts in time order. */
export function sqliteDate(d: Date): string {
	return `${d.toISOString().replace("T", " ").replace("Z", "")} +00:00`;
}

const NAME = /^[a-z][a-z0-9_]*$/;

function guardOf(part: Part): string {
	const req = part.requires ?? [];
	return req.length ? req.map(r => `EXISTS (SELECT 1 FROM ${r})`).join(" AND ") : "TRUE";
}

function checkParts(parts: Part[]): void {
	const seen = new Set<string>();
	for (const p of parts) {
		if (!NAME.test(p.name)) throw new Error(`Bad part name '${p.name}'`);
		for (const r of p.requires ?? []) if (!seen.has(r)) throw new Error(`Part '${p.name}' requires '${r}', which does not come before it`);
		if ((p.requires?.length ?? 0) > 0 && !p.sql.includes("{guard}")) throw new Error(`Part '${p.name}' has requirements but no {guard}`);
		seen.add(p.name);
	}
}

/** The one PostgreSQL statement for a write: each part a CTE, their rows aggregated into one row. */
export function composePostgres(parts: Part[]): string {
	checkParts(parts);
	const ctes = parts.map(p => `${p.name} AS (${p.sql.replaceAll("{guard}", guardOf(p))})`);
	const out = parts.map(p => `(SELECT coalesce(json_agg(x), '[]'::json) FROM ${p.name} x) AS ${p.name}`);
	return `WITH ${ctes.join(",\n")}\nSELECT ${out.join(", ")}`;
}

/**
 * SQLite binds `?N` by number: a statement using some of a write's `$N` gets them renumbered from
 * 1, with only its own values (binding values a statement does not use is an error there).
 */
export function sqliteStatement(sql: string, values: readonly unknown[]): { sql: string; values: unknown[] } {
	const order = new Map<number, number>();
	const out: unknown[] = [];
	const text = sql.replace(/\$(\d+)/g, (_m, n: string) => {
		const i = Number(n);
		if (i < 1 || i > values.length) throw new Error(`Placeholder $${i} has no value`);
		let k = order.get(i);
		if (k === undefined) {
			out.push(sqliteValue(values[i - 1]));
			k = out.length;
			order.set(i, k);
		}
		return `?${k}`;
	});
	return { sql: text.replaceAll("{guard}", "1 = 1"), values: out };
}

function sqliteValue(v: unknown): unknown {
	if (v instanceof Date) return sqliteDate(v);
	if (typeof v === "boolean") return v ? 1 : 0;
	return v;
}

const DEADLOCK_RETRIES = 3;

/** PostgreSQL aborted the statement to break a deadlock (40P01). */
export function isDeadlock(err: unknown): boolean {
	return ((err as { original?: { code?: string } })?.original ?? (err as { code?: string }))?.code === "40P01";
}

/** A constraint the database refused a write for. */
export interface Violation {
	kind: "unique" | "check";
	/** The table (unique) or the constraint's name (check), as far as the driver says. */
	target: string;
	/** The constraint's name (PostgreSQL) or the columns (SQLite's `table.column, …`), to tell unique keys apart. */
	detail: string;
}

/** Reads a constraint violation out of a pg or sqlite3 error (raw or wrapped by Sequelize). */
export function violationOf(err: unknown): Violation | undefined {
	const e = ((err as { original?: unknown })?.original ?? err) as { code?: string; table?: string; constraint?: string; message?: string };
	if (!e) return undefined;
	if (e.code === "23505") return { kind: "unique", target: e.table ?? e.constraint ?? "", detail: e.constraint ?? "" };
	if (e.code === "23514") return { kind: "check", target: e.constraint ?? "", detail: e.constraint ?? "" };
	if (e.code === "SQLITE_CONSTRAINT" || /SQLITE_CONSTRAINT/.test(e.message ?? "")) {
		const unique = /UNIQUE constraint failed: ((\w+)\.[\w., ]+)/.exec(e.message ?? "");
		if (unique) return { kind: "unique", target: unique[2], detail: unique[1] };
		const check = /CHECK constraint failed: (\w+)/.exec(e.message ?? "");
		if (check) return { kind: "check", target: check[1], detail: check[1] };
	}
	return undefined;
}

interface PgClient {
	query(config: { text: string; values?: unknown[]; name?: string }): Promise<{ rows: any[]; rowCount: number | null }>;
}

/** Distinct statements one connection keeps prepared; past this, new texts go unnamed (parsed and planned per call). */
export const PREPARED_PER_CONNECTION = 256;
interface Prepared {
	names: Set<string>;
	/** Texts whose prepared statement went stale on this connection: they are prepared again under a new name. */
	renamed: Map<string, number>;
}
const preparedOn = new WeakMap<object, Prepared>();
const nameCache = new Map<string, string>();

/** A statement's name: a digest of its text, so one name never stands for two texts. */
function statementName(text: string): string {
	let name = nameCache.get(text);
	if (name === undefined) {
		name = `mc_${createHash("sha1").update(text).digest("hex").slice(0, 24)}`;
		if (nameCache.size >= 4 * PREPARED_PER_CONNECTION) nameCache.clear();
		nameCache.set(text, name);
	}
	return name;
}

/**
 * A prepared statement the server will not run any more as prepared: its result's shape changed
 * under it (another node's migration added a column to a table behind `SELECT *`, 0A000), or it is
 * gone (the session was reset, 26000).
 */
function isStalePrepared(err: unknown): boolean {
	const e = err as { code?: string; message?: string };
	return (e?.code === "0A000" && /cached plan must not change result type/.test(e.message ?? "")) || e?.code === "26000";
}

/**
 * Runs one statement on a pg client as a NAMED prepared statement (node-postgres keeps the name
 * per connection and sends only Bind/Execute on later calls). PostgreSQL then skips parsing and
 * rewriting, and after five executions plans once for all values (its plan cache), which is most
 * of a command statement's server CPU: the checkout's CTE statements spent about as long being
 * planned as running (bench/checkout.ts, pg_stat_statements with track_planning). A connection
 * keeps at most PREPARED_PER_CONNECTION of them, so statements whose text varies (IN lists of
 * varying length) cannot grow a backend's memory without bound.
 *
 * A statement that went stale on this connection (a schema change by another process: 0A000
 * "cached plan must not change result type") is prepared again under a new name: at once when
 * `retry` (an autocommitted statement that failed had no effect, so running it again is safe),
 * else from the next call on (inside a transaction the error aborted it; the caller's retry runs
 * afresh). Errors: whatever the statement raises (pg's DatabaseError, with its SQLSTATE `code`).
 */
export async function pgQuery(client: unknown, text: string, values: readonly unknown[] = [], retry = true): Promise<{ rows: any[]; rowCount: number | null }> {
	const c = client as PgClient;
	let state = preparedOn.get(c as object);
	if (!state) preparedOn.set(c as object, (state = { names: new Set(), renamed: new Map() }));
	const base = statementName(text);
	const generation = state.renamed.get(base);
	const name = generation === undefined ? base : `${base}_${generation}`;
	if (!state.names.has(name) && state.names.size >= PREPARED_PER_CONNECTION) return c.query({ text, values: values as unknown[] });
	state.names.add(name);
	try {
		return await c.query({ name, text, values: values as unknown[] });
	} catch (err) {
		if (!isStalePrepared(err)) throw err;
		state.renamed.set(base, (generation ?? 0) + 1);
		if (!retry) throw err;
		return pgQuery(client, text, values, false);
	}
}

interface SqliteDb {
	all(sql: string, values: unknown[], cb: (err: Error | null, rows: any[]) => void): void;
}

const listened = new WeakSet<object>();

function sqliteAll(db: SqliteDb, sql: string, values: readonly unknown[]): Promise<any[]> {
	// node-sqlite3 emits 'error' on the Database when it closes with work queued that has no callback
	// (the finalize() its `all` adds): at shutdown that would be an uncaught exception. Every call here
	// gets its own error through its callback, so the event itself is dropped.
	if (!listened.has(db)) {
		listened.add(db);
		(db as unknown as { on?: (e: string, f: () => void) => void }).on?.("error", () => undefined);
	}
	const s = sqliteStatement(sql, values);
	return new Promise((resolve, reject) => db.all(s.sql, s.values, (err, rows) => (err ? reject(err) : resolve(rows))));
}

/** Statements on one connection: a transaction's, or a pooled one. */
export interface Runner {
	readonly dialect: Dialect;
	/** The Sequelize transaction, when inside one (for `afterCommit` and model calls). */
	readonly transaction?: Transaction;
	query<T = any>(sql: string, values?: readonly unknown[]): Promise<T[]>;
	write(parts: Part[], params: Params): Promise<Record<string, any[]>>;
}

/** Wraps a runner to keep the rows of every write it makes (their events go out after the commit). */
export function recording(r: Runner): { runner: Runner; writes: Record<string, any[]>[] } {
	const writes: Record<string, any[]>[] = [];
	const runner: Runner = {
		dialect: r.dialect,
		transaction: r.transaction,
		query: (sql, values) => r.query(sql, values),
		write: async (parts, params) => {
			const rows = await r.write(parts, params);
			writes.push(rows);
			return rows;
		},
	};
	return { runner, writes };
}

class ConnectionRunner implements Runner {
	constructor(
		readonly dialect: Dialect,
		private readonly conn: unknown,
		readonly transaction?: Transaction,
	) {}

	async query<T>(sql: string, values: readonly unknown[] = []): Promise<T[]> {
		// Inside a transaction a failed statement aborted it: no retry on the same connection (pgQuery).
		if (this.dialect === "postgres") return (await pgQuery(this.conn, sql, values, !this.transaction)).rows as T[];
		return sqliteAll(this.conn as SqliteDb, sql, values);
	}

	async write(parts: Part[], params: Params): Promise<Record<string, any[]>> {
		if (this.dialect === "postgres") {
			const row = (await pgQuery(this.conn, composePostgres(parts), params.values, !this.transaction)).rows[0];
			return Object.fromEntries(parts.map(p => [p.name, row[p.name] ?? []]));
		}
		checkParts(parts);
		const out: Record<string, any[]> = {};
		for (const p of parts) {
			const skip = (p.requires ?? []).some(r => !out[r].length);
			out[p.name] = skip ? [] : await sqliteAll(this.conn as SqliteDb, p.sql, params.values);
		}
		return out;
	}
}

export class Sql {
	readonly dialect: Dialect;

	constructor(private readonly sequelize: Sequelize) {
		this.dialect = sequelize.getDialect() === "postgres" ? "postgres" : "sqlite";
	}

	params(): Params {
		return new Params(this.dialect);
	}

	/** One read, outside any transaction. */
	async select<T = any>(sql: string, values: readonly unknown[] = []): Promise<T[]> {
		if (this.dialect === "postgres") return this.pooled(r => r.query<T>(sql, values));
		// Reads never queue: SQLite lets them run beside the one writer.
		const db = (await (this.sequelize as any).connectionManager.getConnection()) as SqliteDb;
		return sqliteAll(db, sql, values);
	}

	/** One write, autocommitted. */
	async execute<T = any>(sql: string, values: readonly unknown[] = []): Promise<T[]> {
		if (this.dialect === "postgres") return this.pooled(r => r.query<T>(sql, values));
		return this.transaction(r => r.query<T>(sql, values));
	}

	/** Parts that apply together: one statement on PostgreSQL, one transaction on SQLite. */
	async write(parts: Part[], params: Params): Promise<Record<string, any[]>> {
		if (this.dialect === "postgres") return this.pooled(r => r.write(parts, params));
		return this.transaction(r => r.write(parts, params));
	}

	/** Statements on the connection of a Sequelize transaction the caller already holds (e.g. an event handler's `t`). */
	on(t: Transaction): Runner {
		return new ConnectionRunner(this.dialect, (t as any).connection, t);
	}

	/**
	 * A transaction of several statements; `fn` runs them on the transaction's connection. A
	 * transaction PostgreSQL chose as a deadlock victim rolled back entirely and runs again.
	 */
	async transaction<T>(fn: (r: Runner) => Promise<T>): Promise<T> {
		for (let attempt = 1; ; attempt++) {
			try {
				return await this.sequelize.transaction(t => fn(new ConnectionRunner(this.dialect, (t as any).connection, t)));
			} catch (err) {
				if (!isDeadlock(err) || attempt >= DEADLOCK_RETRIES) throw err;
			}
		}
	}

	private async pooled<T>(fn: (r: Runner) => Promise<T>): Promise<T> {
		const cm = (this.sequelize as any).connectionManager;
		for (let attempt = 1; ; attempt++) {
			const conn = await cm.getConnection({ type: "write" });
			try {
				return await fn(new ConnectionRunner(this.dialect, conn));
			} catch (err) {
				// One statement, rolled back whole: running it again is safe.
				if (!isDeadlock(err) || attempt >= DEADLOCK_RETRIES) throw err;
			} finally {
				cm.releaseConnection(conn);
			}
		}
	}
}
