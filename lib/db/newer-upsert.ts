/**
 * An upsert that only replaces a row with a newer state (issue 8, read models that converge): one
 * `INSERT … ON CONFLICT (key) DO UPDATE … WHERE <held is older>` statement, so two concurrent
 * handlers — even for a row that does not exist yet — cannot let the older state win. Both
 * dialects (PostgreSQL, SQLite ≥ 3.24) accept it. Runs in the handler's transaction; answers
 * whether the row now holds this state (re-read, as Sequelize's SQLite driver returns no rows for
 * an INSERT … RETURNING).
 */
import type { Sequelize, Transaction } from "sequelize";
import { QueryTypes } from "sequelize";

export interface NewerUpsert {
	table: string;
	key: string;
	/** Column values to write (the key included); Dates and booleans are escaped per dialect. */
	row: Record<string, unknown>;
	/** The SQL condition, on the held row `held` and the incoming `excluded`, under which the incoming replaces it. */
	newer: string;
	/** Column and value that say the row now holds this state (read back after the write). */
	marker: [string, unknown];
}

export async function upsertIfNewer(sequelize: Sequelize, t: Transaction, u: NewerUpsert): Promise<boolean> {
	const cols = Object.keys(u.row);
	const set = cols.filter(c => c !== u.key).map(c => `${c} = excluded.${c}`).join(", ");
	const newer = u.newer.replace(/\bheld\./g, `${u.table}.`);
	await sequelize.query(`INSERT INTO ${u.table} (${cols.join(", ")}) VALUES (${cols.map(c => `:${c}`).join(", ")}) ON CONFLICT (${u.key}) DO UPDATE SET ${set} WHERE ${newer}`, {
		replacements: u.row,
		transaction: t,
	});
	const [now] = await sequelize.query<Record<string, unknown>>(`SELECT ${u.marker[0]} AS marker FROM ${u.table} WHERE ${u.key} = :key`, { replacements: { key: u.row[u.key] }, transaction: t, type: QueryTypes.SELECT });
	return now !== undefined && String(now.marker) === String(u.marker[1]);
}
