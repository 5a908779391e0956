/**
 * Validation rules (fastest-validator schema) for a postal address, as API.md's Address shape:
 * `{ line1, line2?, city, postalCode, country }` — strings trimmed, lengths as the customers
 * service's columns (line1/line2 ≤ 200, city ≤ 100, postalCode ≤ 20), `country` an upper-case
 * ISO 3166-1 alpha-2 code. One definition shared by customers (saved addresses), orders
 * (a checkout's shipping address) and shipping (quotes and shipments), so an address accepted by
 * one is accepted by the others. A value that breaks a rule is a 422 VALIDATION_ERROR naming it.
 */
export const ADDRESS_RULES = {
	line1: "string|trim|min:1|max:200",
	line2: "string|trim|max:200|optional",
	city: "string|trim|min:1|max:100",
	postalCode: "string|trim|min:1|max:20",
	country: { type: "string", pattern: /^[A-Z]{2}$/, messages: { stringPattern: "country must be an ISO 3166 alpha-2 code, e.g. US" } },
};
