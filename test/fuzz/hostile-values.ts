/**
 * Hostile values for the fuzz tier, generated with fast-check from one seed: for a body field, a
 * query parameter or a path parameter, values that no schema of the contract accepts — control
 * characters, lone surrogates, numbers too large, too small or not finite, exponents, arrays and
 * objects where scalars go, scalars where objects go, `__proto__`/`constructor` keys, deep
 * nesting, duplicate keys — and whole requests in encodings the API does not take.
 */
import fc from "fast-check";

/** A body edit: the JSON text of the request body, built from a valid baseline with one field made hostile. */
export interface BodyCase {
	what: string;
	text: string;
	headers?: Record<string, string>;
}

/** Invisible formatting characters (lib/text.ts): bidi overrides and isolates, zero-width space, BOM. */
const FORMATTING = ["\u202a", "\u202e", "\u2066", "\u2069", "\u200b", "\ufeff", "\u2060"];
const CONTROL = ["\u0000", "\u0001", "\u0008", "\u000b", "\u000c", "\u001b", "\u001f", "\u007f", "\u0085", "\u009f"];
const SURROGATES = ["\ud800", "\udbff", "\udc00", "\udfff"];

const around = (inner: fc.Arbitrary<string>) => fc.tuple(fc.string({ maxLength: 6 }), inner, fc.string({ maxLength: 6 })).map(([a, c, b]) => a + c + b);

/** Strings no field accepts: a control character, a lone surrogate or an invisible formatting character somewhere in them. */
export const hostileString = fc.oneof(around(fc.constantFrom(...CONTROL)), around(fc.constantFrom(...SURROGATES)), around(fc.constantFrom(...FORMATTING)));

/** JSON number tokens (as text) beyond what any numeric field takes, or not numbers a JSON parser keeps. */
export const hostileNumberToken = fc.oneof(
	fc.constantFrom("1e400", "-1e400", "1e308", "-1e308", "9007199254740993", "1e20", "-1e20", "5e-324", "0.5", "-1", "1E+30"),
	fc.double({ noNaN: true, noDefaultInfinity: true }).filter(d => !Number.isInteger(d) || Math.abs(d) > 1e12).map(d => JSON.stringify(d)),
);

/** JSON value texts of the wrong shape: arrays and objects where scalars go, and scalars of the wrong kind. */
export const wrongShapeToken = fc.constantFrom("[]", "[1]", '["a"]', "{}", '{"a":1}', "[[[[[[[[]]]]]]]]");

/** A deep nesting (arrays or objects) as JSON text, beyond the body parser's depth. */
export const deepToken = fc.tuple(fc.integer({ min: 40, max: 400 }), fc.boolean()).map(([depth, objects]) => (objects ? `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}` : `${"[".repeat(depth)}${"]".repeat(depth)}`));

/** The value text to put where a field of this JSON-schema goes: hostile for that field whatever it is. */
export function hostileTokenFor(schema: any): fc.Arbitrary<string> {
	// A field that declares null (OpenAPI `anyOf: [T, {type: "null"}]`) is fuzzed as T; any other takes no null (lib/validator.ts).
	const nullable = Array.isArray(schema?.anyOf) && schema.anyOf.some((s: any) => s?.type === "null");
	const base = nullable ? schema.anyOf.find((s: any) => s?.type !== "null") : schema;
	const nulls = nullable ? [] : [fc.constant("null")];
	const type = base?.type;
	const strings = hostileString.map(s => JSON.stringify(s));
	if (type === "string") return fc.oneof(strings, strings, hostileNumberToken, wrongShapeToken, deepToken, ...nulls);
	if (type === "integer" || type === "number") return fc.oneof(hostileNumberToken, hostileNumberToken, strings, wrongShapeToken, deepToken, ...nulls);
	if (type === "boolean") return fc.oneof(strings, hostileNumberToken, fc.constantFrom("[]", "{}", '"true"', "0"), ...nulls);
	if (type === "array") return fc.oneof(strings, hostileNumberToken, fc.constantFrom("{}", '"a"', "[null]", `[${'"x",'.repeat(600)}"x"]`), deepToken, ...nulls);
	return fc.oneof(strings, hostileNumberToken, fc.constantFrom("[]", '"a"', "1", '{"__proto__":{"x":1}}', '{"constructor":{"prototype":{}}}'), deepToken, ...nulls);
}

/** Query-string values (already percent-encoded) no query parameter takes. */
export const hostileQueryValue = fc.oneof(
	hostileString.map(s => encodeURIComponent(s.replace(/[\ud800-\udfff]/g, "\u0000"))),
	fc.constantFrom("%00", "x%00y", "%1b%5b", "1e400", "NaN", "-1e400", "%ff%fe", "%E0%A4%A", "a%", "[1]"),
);

/** Query strings whose parameter has the wrong shape: arrays, objects, prototype keys. */
export function hostileQueryShapes(name: string): string[] {
	return [`${name}=1&${name}=2`, `${name}[]=1`, `${name}[a]=1`, `${name}[__proto__][x]=1`, `__proto__[${name}]=1`, `constructor[prototype][${name}]=1`];
}

/** Path-parameter values (percent-encoded) that no id, SKU or tracking number is. */
export const hostilePathValue = fc.oneof(
	hostileString.map(s => encodeURIComponent(s.replace(/[\ud800-\udfff]/g, "\u0000"))),
	fc.constantFrom("%00", "x%00", "%ff", "%E0%A4%A", "%", "x".repeat(2000), "%C0%AE%C0%AE"),
);

/**
 * Whole-body cases for a JSON body: prototype keys at the top and inside, a duplicate key of the
 * field, deep nesting, and the body in encodings and charsets the API refuses.
 */
export function structuralCases(baseline: Record<string, unknown>, field: string | undefined): BodyCase[] {
	const inner = JSON.stringify(baseline).slice(1, -1);
	const sep = inner ? "," : "";
	const cases: BodyCase[] = [
		{ what: "__proto__ at the top", text: `{"__proto__": {"admin": true}${sep}${inner}}` },
		{ what: "constructor at the top", text: `{"constructor": {"prototype": {"admin": true}}${sep}${inner}}` },
		{ what: "deeply nested body", text: `${"[".repeat(5000)}${"]".repeat(5000)}` },
		{ what: "a JSON array body", text: `[${JSON.stringify(baseline)}]` },
		{ what: "gzip that is not", text: JSON.stringify(baseline), headers: { "content-encoding": "gzip" } },
		{ what: "br that is not", text: JSON.stringify(baseline), headers: { "content-encoding": "br" } },
		{ what: "an unknown encoding", text: JSON.stringify(baseline), headers: { "content-encoding": "x-compress-9" } },
		{ what: "latin1", text: JSON.stringify(baseline), headers: { "content-type": "application/json; charset=iso-8859-1" } },
		{ what: "form encoded", text: "a=1", headers: { "content-type": "application/x-www-form-urlencoded" } },
	];
	if (field && field in baseline) cases.push({ what: `duplicate ${field}`, text: `{${inner}${sep}${JSON.stringify(field)}: ${JSON.stringify(baseline[field] ?? "x")}}` });
	return cases;
}
