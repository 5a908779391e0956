/**
 * Validation rules (fastest-validator schema) for a postal address, as API.md's Address shape:
 * `{ line1, line2?, city, postalCode, country }` — one line each (lib/text.ts `singleLine`: a line
 * break in an address is a header or CSV row of its own downstream), lengths as the customers
 * service's columns (line1/line2 ≤ 200, city ≤ 100, postalCode ≤ 20), `country` an officially
 * assigned ISO 3166-1 alpha-2 code (lib/country.ts); `line2: null` means no second line (how such an address reads back).
 * One definition shared by customers (saved addresses), orders (a checkout's shipping address)
 * and shipping (quotes and shipments), so an address accepted by one is accepted by the others.
 * A value that breaks a rule is a 422 VALIDATION_ERROR naming it.
 */
import { COUNTRY_RULE } from "./country";
import { singleLine } from "./text";

export const ADDRESS_RULES = {
	line1: singleLine(1, 200),
	line2: singleLine(0, 200, { optional: true, nullable: true }),
	city: singleLine(1, 100),
	postalCode: singleLine(1, 20),
	country: COUNTRY_RULE,
};
