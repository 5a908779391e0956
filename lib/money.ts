/**
 * The platform's money limits and how money is stored (shared/API.md: integer cents plus ISO 4217
 * currency; docs/LIMITS.md says the same to API users).
 *
 * - A unit price is at most MAX_UNIT_PRICE_CENTS ($1,000,000.00).
 * - An order — its total: subtotal, shipping and tax — is at most MAX_ORDER_TOTAL_CENTS
 *   ($10,000,000.00). A cart whose subtotal would pass it is refused when the item is added or its
 *   quantity raised, and a checkout whose total passes it is refused before anything is written
 *   or charged: 422 ORDER_TOO_LARGE, a client error, not a REJECTED order reported as if a
 *   payment provider were unavailable.
 * - Money columns are 64-bit (BIGINT); every amount stays far below 2^53, so it is exact as a
 *   JavaScript number. PostgreSQL hands BIGINT (int8) back as text: `installSafeInt8Parser` turns
 *   it into a number and refuses (throws) one that a number cannot hold exactly, rather than
 *   rounding it silently.
 */
import { UnprocessableError } from "./errors";

export const MAX_UNIT_PRICE_CENTS = 100_000_000;
export const MAX_ORDER_TOTAL_CENTS = 1_000_000_000;
/** fastest-validator rule of a unit price amount. */
export const UNIT_PRICE_RULE = `number|integer|min:0|max:${MAX_UNIT_PRICE_CENTS}`;
/** fastest-validator rule of an order-level amount (payments, refunds). */
export const ORDER_AMOUNT_RULE = `number|integer|min:1|max:${MAX_ORDER_TOTAL_CENTS}`;

const dollars = (cents: number) => `$${(cents / 100).toLocaleString("en-US", { minimumFractionDigits: 2 })}`;

/** 422 ORDER_TOO_LARGE when an amount passes the largest order the platform takes. */
export function checkOrderTotal(amountCents: number, field = "items"): void {
	if (!Number.isSafeInteger(amountCents) || amountCents > MAX_ORDER_TOTAL_CENTS) {
		const message = `The order would come to more than ${dollars(MAX_ORDER_TOTAL_CENTS)}, the largest order this shop takes`;
		throw new UnprocessableError(message, "ORDER_TOO_LARGE", [{ field, message: `total above ${MAX_ORDER_TOTAL_CENTS} cents` }]);
	}
}

/** PostgreSQL int8 text → number, exact or an error. */
export function parseInt8(text: string): number {
	const n = Number(text);
	if (!Number.isSafeInteger(n)) throw new RangeError(`int8 value ${text} is beyond what a number holds exactly`);
	return n;
}

/** Makes node-postgres return int8 (BIGINT, COUNT(*)) as numbers, exactly (see above). Idempotent. */
export function installSafeInt8Parser(pg: { types: { setTypeParser(oid: number, parse: (text: string) => unknown): void } }): void {
	const INT8_OID = 20;
	pg.types.setTypeParser(INT8_OID, parseInt8);
}

/**
 * A migration step that makes money columns 64-bit. PostgreSQL: `ALTER COLUMN … TYPE BIGINT`.
 * SQLite: nothing to do — its INTEGER is already a 64-bit integer.
 */
export async function widenMoneyColumns(qi: { sequelize: { getDialect(): string; query(sql: string): Promise<unknown> } }, table: string, columns: string[]): Promise<void> {
	if (qi.sequelize.getDialect() !== "postgres") return;
	for (const column of columns) await qi.sequelize.query(`ALTER TABLE "${table}" ALTER COLUMN "${column}" TYPE BIGINT`);
}
