/**
 * Database per service: `DbMixin({ name, migrations, models })` gives a service moleculer-db on
 * the Sequelize adapter, over its own SQLite file (embedded default) or its own PostgreSQL
 * database (created if missing), with versioned migrations run at start instead of `sync()`.
 *
 * moleculer-db's generic CRUD actions are switched off: its `update` sets every param it is
 * given, so each service writes the domain actions it needs with `this.models` and
 * `this.transaction()` — and its commands with `this.sql` (lib/db/sql.ts), plain parameterised
 * SQL on the same connection pool, which costs a fraction of a model call.
 */
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Context, Service, ServiceSchema } from "moleculer";
import DbService from "moleculer-db";
import SequelizeAdapter from "moleculer-db-adapter-sequelize";
import { DataTypes, Model, type ModelStatic, type QueryInterface, Sequelize, Transaction } from "sequelize";
import pg from "pg";
import { SequelizeStorage, Umzug } from "umzug";
import { config } from "../config";
import { installSafeInt8Parser } from "../lib/money";
import { Sql, violationOf } from "../lib/db/sql";

export interface Migration {
	name: string;
	up(qi: QueryInterface, types: typeof DataTypes): Promise<void>;
}

export type Models = Record<string, ModelStatic<Model>>;

export interface DbMixinOptions {
	/** Service (and database) name. */
	name: string;
	migrations: Migration[];
	/** Defines the service's models on its Sequelize instance; the first one is moleculer-db's `model`. */
	models: (sequelize: Sequelize) => Models;
}

export interface DbMethods {
	models: Models;
	sequelize: Sequelize;
	/** Plain parameterised SQL on the same pool (lib/db/sql.ts): the command path. */
	sql: Sql;
	transaction<T>(fn: (t: Transaction) => Promise<T>): Promise<T>;
	isUniqueViolation(err: unknown): boolean;
}

/** The SQLite file or PostgreSQL URL of one service's database. */
export function databaseTarget(name: string): { dialect: "sqlite" | "postgres"; url: string; database: string } {
	const c = config();
	const database = `${c.DB_NAME_PREFIX}${name}`;
	const override = c.serviceDatabaseUrls[name];
	if (override) return { dialect: "postgres", url: override, database: new URL(override).pathname.slice(1) };
	if (c.DATABASE_URL) {
		const url = new URL(c.DATABASE_URL);
		url.pathname = `/${database}`;
		return { dialect: "postgres", url: url.toString(), database };
	}
	const dir = resolve(c.DATA_DIR);
	mkdirSync(dir, { recursive: true });
	return { dialect: "sqlite", url: join(dir, `${database}.sqlite`), database };
}

async function createPostgresDatabaseIfMissing(url: string, database: string): Promise<void> {
	const admin = new URL(url);
	admin.pathname = "/postgres";
	const s = new Sequelize(admin.toString(), { logging: false, dialect: "postgres" });
	try {
		await s.query(`CREATE DATABASE "${database.replace(/"/g, "")}"`);
	} catch (err: any) {
		// 42P04: it exists already (another replica may have created it a moment ago); 23505: the same race
		const code = err?.original?.code ?? err?.parent?.code;
		if (code !== "42P04" && code !== "23505") throw err;
	} finally {
		await s.close();
	}
}

export async function openDatabase(name: string): Promise<Sequelize> {
	const target = databaseTarget(name);
	const c = config();
	if (target.dialect === "postgres") {
		// Money columns are BIGINT: back as exact numbers, not as text (lib/money.ts).
		installSafeInt8Parser(pg);
		await createPostgresDatabaseIfMissing(target.url, target.database);
		return new Sequelize(target.url, {
			dialect: "postgres",
			logging: false,
			pool: { max: c.DB_POOL_MAX, min: 0, idle: 10_000, acquire: 10_000 },
		});
	}
	const sqlite = new Sequelize({
		dialect: "sqlite",
		storage: target.url,
		logging: false,
		// Writers take the file lock when they begin, instead of failing on a lock upgrade.
		transactionType: Transaction.TYPES.IMMEDIATE,
		// A writer that finds the file locked retries here, in JavaScript: a long busy_timeout would
		// wait inside libuv's few threads and starve the very transaction holding the lock.
		retry: { max: 60, match: [/SQLITE_BUSY/], backoffBase: 10, backoffExponent: 1.1 },
		hooks: {
			afterConnect: (conn: any) =>
				new Promise<void>((ok, fail) =>
					conn.exec("PRAGMA busy_timeout = 50; PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON;", (e: Error | null) => (e ? fail(e) : ok())),
				),
		},
	});
	return serializeTransactions(sqlite);
}

/**
 * SQLite has one writer at a time per file. Managed transactions of this process queue here
 * (FIFO) rather than competing for the lock; reads never wait (WAL).
 */
function serializeTransactions(sequelize: Sequelize): Sequelize {
	const original = sequelize.transaction.bind(sequelize) as (...args: any[]) => Promise<any>;
	let tail: Promise<unknown> = Promise.resolve();
	(sequelize as any).transaction = (...args: any[]) => {
		if (typeof args[args.length - 1] !== "function") return original(...args);
		const run = () => original(...args);
		const result = tail.then(run, run);
		tail = result.catch(() => undefined);
		return result;
	};
	return sequelize;
}

/** Runs pending migrations; on PostgreSQL under an advisory lock so replicas starting together take turns. */
export async function migrate(sequelize: Sequelize, name: string, migrations: Migration[]): Promise<string[]> {
	const umzug = new Umzug({
		migrations: migrations.map(m => ({ name: m.name, up: ({ context }: { context: QueryInterface }) => m.up(context, DataTypes) })),
		context: sequelize.getQueryInterface(),
		storage: new SequelizeStorage({ sequelize, tableName: "schema_migrations" }),
		logger: undefined,
	});
	if (sequelize.getDialect() !== "postgres") return (await umzug.up()).map(m => m.name);

	const lockConn: any = await (sequelize.connectionManager as any).getConnection();
	const key = `migrations:${name}`;
	try {
		await lockConn.query("SELECT pg_advisory_lock(hashtext($1))", [key]);
		return (await umzug.up()).map(m => m.name);
	} finally {
		await lockConn.query("SELECT pg_advisory_unlock(hashtext($1))", [key]).catch(() => undefined);
		(sequelize.connectionManager as any).releaseConnection(lockConn);
	}
}

/** The adapter opens the service's own database and migrates it instead of calling `sync()`. */
class MigratingAdapter extends SequelizeAdapter {
	constructor(private readonly mixinOpts: DbMixinOptions) {
		super(undefined as any);
	}

	override async connect(): Promise<void> {
		const svc = (this as any).service as Service & DbMethods;
		const sequelize = await openDatabase(this.mixinOpts.name);
		try {
			await sequelize.authenticate();
			const applied = await migrate(sequelize, this.mixinOpts.name, this.mixinOpts.migrations);
			if (applied.length) svc.logger.info(`Applied migrations: ${applied.join(", ")}`);
			const models = this.mixinOpts.models(sequelize);
			(this as any).db = sequelize;
			(this as any).model = Object.values(models)[0];
			svc.models = models;
			svc.sequelize = sequelize;
			svc.sql = new Sql(sequelize);
			(svc as any).model = (this as any).model;
		} catch (err) {
			await sequelize.close();
			throw err;
		}
	}
}

const disabledCrud = Object.fromEntries(
	["find", "count", "list", "create", "insert", "get", "update", "remove"].map(a => [a, false]),
);

export function DbMixin(opts: DbMixinOptions): Partial<ServiceSchema> {
	return {
		mixins: [DbService],
		adapter: new MigratingAdapter(opts),
		// moleculer-db's `init` wants a model definition; the real models come from `opts.models`.
		model: { name: opts.name, define: {} },
		settings: { idField: "id" },
		actions: disabledCrud as any,
		created(this: Service & { adapter: any }) {
			// One adapter per service instance, so several brokers in one process never share a connection.
			this.adapter = new MigratingAdapter(opts);
			this.adapter.init(this.broker, this);
		},
		methods: {
			transaction<T>(this: Service & DbMethods, fn: (t: Transaction) => Promise<T>): Promise<T> {
				return this.sequelize.transaction(fn);
			},
			isUniqueViolation(err: unknown): boolean {
				return (err as Error)?.name === "SequelizeUniqueConstraintError" || violationOf(err)?.kind === "unique";
			},
		},
	} as unknown as Partial<ServiceSchema>;
}

export type DbContext = Context;

/** JSON columns come back parsed from PostgreSQL but as text from SQLite when read `raw`. */
export function jsonColumn<T>(value: unknown, fallback: T): T {
	if (value == null) return fallback;
	if (typeof value === "string") {
		try {
			return JSON.parse(value) as T;
		} catch {
			return fallback;
		}
	}
	return value as T;
}
