/**
 * Named prepared statements (lib/db/sql.ts pgQuery) against a schema change made by another
 * process — a rolling deploy's migration — while this connection keeps its prepared statements.
 * Found by the adversary review of issue 7: PostgreSQL refuses a prepared `SELECT *` / `RETURNING *`
 * whose result gained a column (0A000 "cached plan must not change result type"), on every call,
 * for the connection's life. The statement is now prepared again under a new name.
 */
const { Client } = require("pg") as { Client: new (o: { connectionString: string }) => any };
import { pgQuery } from "../../../lib/db/sql";

const PG = "postgres://postgres@127.0.0.1:5432/postgres";

describe("prepared statements after another process changed the table", () => {
	let app: any;
	let migrator: any;
	let table: string;

	beforeEach(async () => {
		table = `adv_prep_${Math.random().toString(36).slice(2, 8)}`;
		app = new Client({ connectionString: PG });
		migrator = new Client({ connectionString: PG });
		await app.connect();
		await migrator.connect();
		await migrator.query(`CREATE TABLE ${table} (id text PRIMARY KEY, epoch int NOT NULL DEFAULT 1)`);
		await migrator.query(`INSERT INTO ${table} (id) VALUES ('a')`);
	});

	afterEach(async () => {
		await migrator.query(`DROP TABLE IF EXISTS ${table}`).catch(() => undefined);
		await app.end();
		await migrator.end();
	});

	it("an autocommitted SELECT * / UPDATE … RETURNING * answers with the new column at once, and keeps working", async () => {
		const sel = `SELECT * FROM ${table} WHERE id = $1`;
		const upd = `UPDATE ${table} SET epoch = epoch + 1 WHERE id = $1 RETURNING *`;
		for (let i = 0; i < 6; i++) {
			await pgQuery(app, sel, ["a"]);
			await pgQuery(app, upd, ["a"]);
		}
		await migrator.query(`ALTER TABLE ${table} ADD COLUMN next_retry_at timestamptz`);
		for (let i = 0; i < 3; i++) {
			expect(Object.keys((await pgQuery(app, sel, ["a"])).rows[0])).toEqual(["id", "epoch", "next_retry_at"]);
			expect((await pgQuery(app, upd, ["a"])).rows[0]).toMatchObject({ id: "a", next_retry_at: null });
		}
		// The UPDATE that failed on the stale statement had no effect: 6 + 3 increments, not one more.
		expect((await migrator.query(`SELECT epoch FROM ${table}`)).rows[0].epoch).toBe(10);
	});

	it("inside a transaction the stale statement fails once (the transaction is aborted) and works from the next call on", async () => {
		const sel = `SELECT * FROM ${table} WHERE id = $1`;
		for (let i = 0; i < 6; i++) await pgQuery(app, sel, ["a"]);
		await migrator.query(`ALTER TABLE ${table} ADD COLUMN note text`);
		await app.query("BEGIN");
		await expect(pgQuery(app, sel, ["a"], false)).rejects.toMatchObject({ code: "0A000" });
		await app.query("ROLLBACK");
		await app.query("BEGIN");
		expect(Object.keys((await pgQuery(app, sel, ["a"], false)).rows[0])).toEqual(["id", "epoch", "note"]);
		await app.query("COMMIT");
	});
});
