/**
 * Small producer and consumer services for the events tests (their own databases), and helpers
 * to start a private NATS server with JetStream.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ServiceBroker, ServiceSchema } from "moleculer";
import { connect } from "nats";
import { DataTypes, Sequelize, type Transaction, literal } from "sequelize";
import { busNames } from "../../../lib/bus/policy";
import type { OrderEventData } from "../../../lib/events";
import { ConsumerMixin, inboxMigrations } from "../../../mixins/consumer.mixin";
import { DbMixin } from "../../../mixins/db.mixin";
import { OutboxMixin, outboxMigrations } from "../../../mixins/outbox.mixin";

/** What the consumers did, shared by every broker of the test file. */
export const effects = {
	/** `<group>/<orderId>` → remaining failures that group's handler throws before it succeeds. */
	failures: new Map<string, number>(),
	/** orderId → nodeIDs of the brokers whose handler committed it. */
	appliedBy: new Map<string, string[]>(),
	reset(): void {
		this.failures.clear();
		this.appliedBy.clear();
	},
};

export function order(orderId: string): OrderEventData {
	return { orderId, customerId: "c-1", status: "CONFIRMED", items: [{ productId: "p-1", sku: "SKU-1", quantity: 1 }], total: { amount: 1000, currency: "USD" } };
}

/** A producer whose `place` action writes an order row and records `orders.order.confirmed` in one transaction. */
export function producerService(name = "evshop"): ServiceSchema {
	return {
		name,
		mixins: [
			DbMixin({
				name,
				migrations: [
					{
						name: "001-orders",
						async up(qi, T) {
							await qi.createTable("orders", { id: { type: T.STRING(36), primaryKey: true }, created_at: { type: T.DATE(3), allowNull: false } });
						},
					},
					...outboxMigrations,
				],
				models: s => ({
					Order: s.define("Order", { id: { type: DataTypes.STRING(36), primaryKey: true }, created_at: DataTypes.DATE(3) }, { tableName: "orders", timestamps: false }),
				}),
			}),
			OutboxMixin,
		],
		actions: {
			place: {
				params: { orderId: "string", rollback: "boolean|optional" },
				async handler(this: any, ctx: any) {
					try {
						return await this.transaction(async (t: Transaction) => {
							await this.models.Order.create({ id: ctx.params.orderId, created_at: new Date() }, { transaction: t });
							const event = await this.recordEvent(t, "orders.order.confirmed", order(ctx.params.orderId));
							if (ctx.params.rollback) throw new Error("rolled back on purpose");
							return event;
						});
					} catch (err) {
						if ((err as Error).message === "rolled back on purpose") return null;
						throw err;
					}
				},
			},
			placeMany: {
				params: { prefix: "string", count: "number|integer|min:1|max:5000" },
				async handler(this: any, ctx: any) {
					for (let i = 0; i < ctx.params.count; i++) {
						await this.transaction(async (t: Transaction) => {
							const id = `${ctx.params.prefix}${i}`;
							await this.models.Order.create({ id, created_at: new Date() }, { transaction: t });
							await this.recordEvent(t, "orders.order.confirmed", order(id));
						});
					}
					return ctx.params.count;
				},
			},
		},
	};
}

/**
 * A consumer that counts, in its own database, how often each order was applied (a double
 * application shows as a count of 2), and fails on demand (`effects.failures`).
 */
/**
 * A consumer whose handler is one write (a StatementHandler, mixins/consumer.mixin.ts): the inbox
 * claim and the tally's upsert go as one statement on PostgreSQL.
 */
export function statementConsumerService(name = "evstmt"): ServiceSchema {
	const base = consumerService(name);
	return {
		...base,
		subscriptions: {
			"orders.order.confirmed": {
				parts(this: any, e: OrderEventData & { eventId: string }, p: any) {
					return [{ name: "tally", sql: `INSERT INTO tallies (order_id, count) SELECT ${p.text(e.orderId)}, 1 WHERE {guard} ON CONFLICT (order_id) DO UPDATE SET count = tallies.count + 1 RETURNING count` }];
				},
				committed(this: any, e: OrderEventData & { eventId: string }, rows: Record<string, any[]>) {
					effects.appliedBy.set(`${name}/${e.orderId}`, [...(effects.appliedBy.get(`${name}/${e.orderId}`) ?? []), String(rows.tally[0]?.count)]);
				},
			},
		} as any,
	};
}

export function consumerService(name = "evledger"): ServiceSchema {
	return {
		name,
		mixins: [
			DbMixin({
				name,
				migrations: [
					{
						name: "001-tallies",
						async up(qi, T) {
							await qi.createTable("tallies", { order_id: { type: T.STRING(36), primaryKey: true }, count: { type: T.INTEGER, allowNull: false } });
						},
					},
					...inboxMigrations,
				],
				models: s => ({
					Tally: s.define("Tally", { order_id: { type: DataTypes.STRING(36), primaryKey: true }, count: DataTypes.INTEGER }, { tableName: "tallies", timestamps: false }),
				}),
			}),
			ConsumerMixin,
		],
		actions: {
			tallies: {
				async handler(this: any) {
					const rows = await this.models.Tally.findAll({ raw: true });
					return Object.fromEntries(rows.map((r: any) => [r.order_id, r.count]));
				},
			},
		},
		subscriptions: {
			async "orders.order.confirmed"(this: any, e: OrderEventData & { eventId: string }, t: Transaction) {
				const [n] = await this.models.Tally.update({ count: literal("count + 1") }, { where: { order_id: e.orderId }, transaction: t });
				if (!n) await this.models.Tally.create({ order_id: e.orderId, count: 1 }, { transaction: t });
				const key = `${this.name}/${e.orderId}`;
				const left = effects.failures.get(key) ?? 0;
				if (left > 0) {
					effects.failures.set(key, left - 1);
					throw new Error(`handler fails for ${e.orderId} (${left} left)`);
				}
				const nodeID = this.broker.nodeID;
				t.afterCommit(() => {
					effects.appliedBy.set(e.orderId, [...(effects.appliedBy.get(e.orderId) ?? []), nodeID]);
				});
			},
		},
	};
}

/** Polls `check` until it returns a truthy value (returned) or the time is up (throws with the last value). */
export async function waitFor<T>(check: () => Promise<T> | T, timeoutMs = 15_000, everyMs = 50): Promise<T> {
	const until = Date.now() + timeoutMs;
	let last: T | undefined;
	for (;;) {
		last = await check();
		if (last) return last;
		if (Date.now() > until) throw new Error(`Condition not met within ${timeoutMs} ms (last: ${JSON.stringify(last)})`);
		await new Promise(r => setTimeout(r, everyMs));
	}
}

export async function tallies(broker: ServiceBroker, consumer = "evledger"): Promise<Record<string, number>> {
	return broker.call(`${consumer}.tallies`);
}

/** A NATS server with JetStream on a free port and its own store directory; stop() and start() keep the store. */
export class PrivateNats {
	private proc?: ChildProcess;
	readonly storeDir = mkdtempSync(join(tmpdir(), "mc-nats-"));
	port = 0;

	get url(): string {
		return `nats://127.0.0.1:${this.port}`;
	}

	/**
	 * The first start lets the server bind any free port (-p -1) and reads it from its log: no port is
	 * picked first and bound later. A restart binds that same port again, as a restarted server would.
	 */
	async start(): Promise<void> {
		if (this.proc && this.proc.exitCode === null) return;
		const proc = spawn("nats-server", ["-js", "-a", "127.0.0.1", "-p", String(this.port || -1), "-sd", this.storeDir], { stdio: ["ignore", "pipe", "pipe"] });
		this.proc = proc;
		let log = "";
		const collect = (d: Buffer) => {
			log += d.toString();
			const m = /Listening for client connections on [^\s]+:(\d+)/.exec(log);
			if (m && !this.port) this.port = Number(m[1]);
		};
		proc.stdout!.on("data", collect);
		proc.stderr!.on("data", collect);
		await waitFor(() => {
			if (proc.exitCode !== null) throw new Error(`nats-server exited with ${proc.exitCode}: ${log}`);
			return this.port > 0;
		}, 10_000);
		await waitFor(async () => {
			if (proc.exitCode !== null) throw new Error(`nats-server exited with ${proc.exitCode}`);
			try {
				const nc = await connect({ servers: this.url, reconnect: false });
				const jsm = await nc.jetstreamManager();
				await jsm.getAccountInfo();
				await nc.close();
				return true;
			} catch {
				return false;
			}
		}, 10_000);
	}

	async stop(): Promise<void> {
		const proc = this.proc;
		if (!proc || proc.exitCode !== null) return;
		const exited = new Promise(r => proc.once("exit", r));
		proc.kill("SIGTERM");
		await exited;
		this.proc = undefined;
	}

	async destroy(): Promise<void> {
		await this.stop();
		rmSync(this.storeDir, { recursive: true, force: true });
	}
}

/** Deletes the namespace's streams from a shared NATS server after a test file. */
export async function deleteStreams(url: string, namespace: string): Promise<void> {
	const names = busNames(namespace);
	const nc = await connect({ servers: url, reconnect: false });
	try {
		const jsm = await nc.jetstreamManager();
		for (const s of [names.stream, names.dlqStream]) await jsm.streams.delete(s).catch(() => false);
	} finally {
		await nc.close();
	}
}

export const PG_URL = "postgres://postgres@127.0.0.1:5432/postgres";

/** A database name prefix of this test run's own (DB_NAME_PREFIX). */
export function pgPrefix(tag: string): string {
	return `t_${tag}_${process.pid}_${Math.random().toString(36).slice(2, 8)}_`;
}

/** Drops the databases a test created under its prefix. */
export async function dropDatabases(prefix: string): Promise<void> {
	const admin = new Sequelize(PG_URL, { logging: false, dialect: "postgres" });
	try {
		const rows = (await admin.query("SELECT datname FROM pg_database WHERE datname LIKE :p", { replacements: { p: `${prefix}%` }, type: "SELECT" })) as { datname: string }[];
		for (const r of rows) await admin.query(`DROP DATABASE IF EXISTS "${r.datname}" WITH (FORCE)`);
	} finally {
		await admin.close();
	}
}
