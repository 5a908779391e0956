/**
 * The plain-SQL helper's pure parts (lib/db/sql.ts): a write's parts as one PostgreSQL statement,
 * SQLite's numbered parameters, dates in SQLite's stored format, constraint violations read from
 * either driver, lists of texts as one parameter on PostgreSQL.
 */
import { Params, composePostgres, sqliteDate, sqliteStatement, violationOf } from "../../../lib/db/sql";

describe("a write as one PostgreSQL statement", () => {
	it("makes each part a CTE, turns requirements into EXISTS guards, and returns every part's rows", () => {
		const sql = composePostgres([
			{ name: "a", sql: "UPDATE t SET x = $1 WHERE id = $2 RETURNING id" },
			{ name: "b", sql: "INSERT INTO u (id) SELECT $3 WHERE {guard} RETURNING id", requires: ["a"] },
			{ name: "c", sql: "INSERT INTO v (id) SELECT $4 WHERE {guard} RETURNING id" },
		]);
		expect(sql).toBe(
			"WITH a AS (UPDATE t SET x = $1 WHERE id = $2 RETURNING id),\n" +
				"b AS (INSERT INTO u (id) SELECT $3 WHERE EXISTS (SELECT 1 FROM a) RETURNING id),\n" +
				"c AS (INSERT INTO v (id) SELECT $4 WHERE TRUE RETURNING id)\n" +
				"SELECT (SELECT coalesce(json_agg(x), '[]'::json) FROM a x) AS a, (SELECT coalesce(json_agg(x), '[]'::json) FROM b x) AS b, (SELECT coalesce(json_agg(x), '[]'::json) FROM c x) AS c",
		);
	});

	it("refuses a requirement on a later part, a guarded part without {guard}, and odd names", () => {
		expect(() => composePostgres([{ name: "a", sql: "SELECT 1 WHERE {guard}", requires: ["b"] }, { name: "b", sql: "SELECT 1" }])).toThrow("does not come before");
		expect(() => composePostgres([{ name: "a", sql: "SELECT 1" }, { name: "b", sql: "SELECT 1", requires: ["a"] }])).toThrow("no {guard}");
		expect(() => composePostgres([{ name: "A; DROP", sql: "SELECT 1" }])).toThrow("Bad part name");
	});
});

describe("SQLite statements", () => {
	it("renumber a write's placeholders from 1 with only their own values, the same value once", () => {
		expect(sqliteStatement("UPDATE t SET a = $3, b = $5 WHERE c = $3 AND {guard}", ["x", "y", "z", "w", 7])).toEqual({ sql: "UPDATE t SET a = ?1, b = ?2 WHERE c = ?1 AND 1 = 1", values: ["z", 7] });
	});

	it("refuse a placeholder without a value", () => {
		expect(() => sqliteStatement("SELECT $2", ["a"])).toThrow("$2 has no value");
	});

	it("store dates as Sequelize does, so that text order is time order", () => {
		expect(sqliteDate(new Date("2026-11-24T10:00:00.123Z"))).toBe("2026-11-24 10:00:00.123 +00:00");
		expect(sqliteStatement("SELECT $1, $2", [new Date("2026-01-02T03:04:05.006Z"), true]).values).toEqual(["2026-01-02 03:04:05.006 +00:00", 1]);
	});
});

describe("parameters", () => {
	it("are typed where PostgreSQL cannot infer them, and left alone on SQLite", () => {
		const pg = new Params("postgres");
		expect([pg.text("a"), pg.int(2.7), pg.json({ a: 1 }), pg.ts(new Date(0)), pg.add(null)]).toEqual(["CAST($1 AS text)", "CAST($2 AS INTEGER)", "CAST($3 AS json)", "CAST($4 AS timestamptz)", "$5"]);
		expect(pg.values).toEqual(["a", 2, '{"a":1}', "1970-01-01T00:00:00.000Z", null]);
		const lite = new Params("sqlite");
		expect([lite.text("a"), lite.json([1]), lite.ts(new Date(0))]).toEqual(["$1", "$2", "$3"]);
		expect(lite.values).toEqual(["a", "[1]", "1970-01-01 00:00:00.000 +00:00"]);
	});

	it("give a list of texts one statement text on PostgreSQL whatever its length (one prepared statement), one placeholder per value on SQLite", () => {
		const texts = [1, 2, 7].map(n => {
			const pg = new Params("postgres");
			const sql = `UPDATE t SET a = ${pg.text("x")} WHERE ${pg.oneOf("id", Array.from({ length: n }, (_, i) => `id${i}`))}`;
			expect(pg.values).toEqual(["x", Array.from({ length: n }, (_, i) => `id${i}`)]);
			return sql;
		});
		expect(new Set(texts).size).toBe(1);
		expect(texts[0]).toBe("UPDATE t SET a = CAST($1 AS text) WHERE id = ANY(CAST($2 AS text[]))");
		const lite = new Params("sqlite");
		expect(lite.oneOf("id", ["a", "b"])).toBe("id IN ($1, $2)");
		expect(lite.values).toEqual(["a", "b"]);
	});
});

describe("constraint violations", () => {
	it("are read from pg errors, sqlite3 errors and Sequelize's wrappers alike", () => {
		expect(violationOf({ code: "23505", table: "idempotency_keys", constraint: "idempotency_keys_pkey" })).toEqual({ kind: "unique", target: "idempotency_keys", detail: "idempotency_keys_pkey" });
		expect(violationOf({ code: "23514", constraint: "stock_levels" })).toEqual({ kind: "check", target: "stock_levels", detail: "stock_levels" });
		expect(violationOf({ code: "SQLITE_CONSTRAINT", message: "SQLITE_CONSTRAINT: UNIQUE constraint failed: shipments.fulfillment_id" })).toEqual({ kind: "unique", target: "shipments", detail: "shipments.fulfillment_id" });
		expect(violationOf({ code: "SQLITE_CONSTRAINT", message: "SQLITE_CONSTRAINT: CHECK constraint failed: stock_levels" })).toEqual({ kind: "check", target: "stock_levels", detail: "stock_levels" });
		expect(violationOf({ original: { code: "23505", table: "orders", constraint: "orders_number_key" } })?.kind).toBe("unique");
		expect(violationOf(new Error("something else"))).toBeUndefined();
	});
});
