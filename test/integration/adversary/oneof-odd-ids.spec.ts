/**
 * ADVERSARY: Params.oneOf (lib/db/sql.ts) with many ids and ids with odd characters, on PostgreSQL
 * (one text[] parameter, named prepared statement via pgQuery) and SQLite (IN list), as used by the
 * outbox relay's marks and catalog.getMany.
 */
const { Client } = require("pg") as { Client: new (o: { connectionString: string }) => any };
const sqlite3 = require("sqlite3");
import { Params, pgQuery, sqliteStatement } from "../../../lib/db/sql";

const odd = ["a'b", 'q"uote', "c,omma", "{brace}", "back\\slash", "NULL", "", " sp ace ", "ünï😀", "x".repeat(64), "a''b", "{}", "\\\"", "$1"];
const many = [...odd, ...Array.from({ length: 486 }, (_, i) => `id-${i}`)];

it("PostgreSQL: every odd id matched exactly once, 500 ids, twice on the same connection", async () => {
	const c = new Client({ connectionString: "postgres://postgres@127.0.0.1:5432/postgres" });
	await c.connect();
	const t = `adv_oneof_${Math.random().toString(36).slice(2, 8)}`;
	try {
		await c.query(`CREATE TABLE ${t} (id text PRIMARY KEY, status text NOT NULL DEFAULT 'PENDING')`);
		for (const id of [...many, "other"]) await c.query(`INSERT INTO ${t} (id) VALUES ($1)`, [id]);
		for (const ids of [many.slice(0, 3), many]) {
			const p = new Params("postgres");
			const r = await pgQuery(c, `UPDATE ${t} SET status = 'PUBLISHED' WHERE status = 'PENDING' AND ${p.oneOf("id", ids)} RETURNING id`, p.values);
			expect(r.rows.map((x: any) => x.id).sort()).toEqual(ids.filter((v, i) => ids.indexOf(v) === i && !(ids === many && many.slice(0, 3).includes(v))).sort());
		}
		const left = await c.query(`SELECT id FROM ${t} WHERE status = 'PENDING'`);
		expect(left.rows.map((x: any) => x.id)).toEqual(["other"]);
	} finally {
		await c.query(`DROP TABLE IF EXISTS ${t}`);
		await c.end();
	}
});

it("SQLite: 500 odd ids in one IN list", async () => {
	const db = new sqlite3.Database(":memory:");
	const run = (sql: string, v: unknown[] = []) => new Promise<any[]>((res, rej) => db.all(sql, v, (e: any, rows: any[]) => (e ? rej(e) : res(rows))));
	await run("CREATE TABLE t (id text PRIMARY KEY, status text NOT NULL DEFAULT 'PENDING')");
	for (const id of [...many, "other"]) await run("INSERT INTO t (id) VALUES (?)", [id]);
	const p = new Params("sqlite");
	const st = sqliteStatement(`UPDATE t SET status = 'PUBLISHED' WHERE status = 'PENDING' AND ${p.oneOf("id", many)} RETURNING id`, p.values);
	const rows = await run(st.sql, st.values);
	expect(rows.length).toBe(many.length);
	expect((await run("SELECT id FROM t WHERE status = 'PENDING'")).map(r => r.id)).toEqual(["other"]);
	db.close();
});
