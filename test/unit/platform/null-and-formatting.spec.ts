/**
 * Two kinds of hostile input the first round of issue 9 let through: `null` in a field that does
 * not declare `nullable: true` (fastest-validator takes it as "absent" in every optional field),
 * and invisible formatting characters (bidirectional overrides and isolates, zero-width space, BOM)
 * in names and other text.
 */
import { findCategory } from "../../../lib/catalog/categories";
import { publicReadiness } from "../../../lib/public-readiness";
import { ProductSearchIndex } from "../../../lib/search/search-index";
import { characterProblem, forbiddenCharacter, SINGLE_LINE, textProblem } from "../../../lib/text";
import { NULL_MESSAGE, StrictValidator, inspectParams } from "../../../lib/validator";

const validator = new (StrictValidator as any)();
const compile = (schema: Record<string, unknown>) => validator.compile(schema) as (p: Record<string, unknown>) => true | { type: string; field: string; message: string }[];

describe("null is a value, refused unless the rule declares nullable: true", () => {
	const check = compile({
		amount: "number|integer|min:1|optional",
		status: { type: "enum", values: ["PENDING", "PUBLISHED"], default: "PENDING" },
		phone: { type: "string", optional: true, nullable: true },
		address: { type: "object", optional: true, props: { line1: "string", line2: "string|optional" } },
		lines: { type: "array", optional: true, items: { type: "object", props: { productId: "string", quantity: "number|optional" } } },
		attributes: { type: "record", optional: true, key: "string", value: [{ type: "string" }, { type: "number" }] },
		anything: { type: "any", optional: true },
	});

	it("refuses null in an optional field with the validator's `required` and a message saying null", () => {
		expect(check({ amount: null })).toEqual([expect.objectContaining({ type: "required", field: "amount", message: NULL_MESSAGE.replace("{field}", "amount") })]);
		expect(NULL_MESSAGE).toBe("The '{field}' field is required and cannot be null.");
	});

	it("refuses null in a field with a default instead of replacing it by the default", () => {
		const params: Record<string, unknown> = { status: null };
		expect(check(params)).toEqual([expect.objectContaining({ field: "status" })]);
		expect(params.status).toBeNull();
	});

	it("refuses null inside objects, array items and record values", () => {
		expect(check({ address: { line1: "x", line2: null } })).toEqual([expect.objectContaining({ field: "address.line2" })]);
		expect(check({ address: null })).toEqual([expect.objectContaining({ field: "address" })]);
		expect(check({ lines: [{ productId: "p", quantity: null }] })).not.toBe(true);
		expect(check({ lines: [null] })).not.toBe(true);
		expect(check({ attributes: { color: null } })).not.toBe(true);
	});

	it("takes null where the rule declares nullable: true, and in `any`", () => {
		expect(check({ phone: null, anything: null })).toBe(true);
	});

	it("still applies defaults to absent fields and takes what it took before", () => {
		const params: Record<string, unknown> = { amount: 5, address: { line1: "1 Main St" }, lines: [{ productId: "p" }], attributes: { a: "x", b: 2 } };
		expect(check(params)).toBe(true);
		expect(params.status).toBe("PENDING");
	});

	it("refuses null in shorthand rules and at the top level of required fields", () => {
		const strict = compile({ name: "string|min:1", count: "number|optional|convert" });
		expect(strict({ name: null })).not.toBe(true);
		expect(strict({ name: "x", count: null })).not.toBe(true);
		expect(strict({ name: "x" })).toBe(true);
	});
});

describe("invisible formatting characters", () => {
	const bidi = ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069"];
	const otherInvisible = ["\u200b", "\u2060", "\ufeff", "\u00ad", "\u180e", "\u2062", "\ufff9"];

	it("refuses every bidirectional embedding, override and isolate anywhere in text, naming the code point", () => {
		for (const c of bidi) {
			const code = `U+${c.charCodeAt(0).toString(16).toUpperCase()}`;
			expect(textProblem(`invoice${c}fdp.exe`)).toBe(`must not contain invisible formatting characters (found ${code})`);
			expect(characterProblem(`x${c}`, true)).toBe(`must not contain invisible formatting characters (found ${code})`);
		}
	});

	it("refuses zero-width space, word joiner, BOM, soft hyphen and the like", () => {
		for (const c of otherInvisible) expect([c, textProblem(`Ad${c}min`)]).toEqual([c, expect.stringContaining("invisible formatting characters")]);
	});

	it("keeps what real text needs: ZWJ emoji, ZWNJ in Persian, RLM in Hebrew, flag tags, accents", () => {
		for (const good of ["👩\u200d💻", "می\u200cخواهم", "שלום\u200f!", "🏴\u{E0067}\u{E0062}\u{E0065}\u{E006E}\u{E0067}\u{E007F}", "Zoë", "line\nnext"]) {
			expect([good, textProblem(good)]).toEqual([good, null]);
		}
	});

	it("refuses them in parameters wherever they are, before the schema", () => {
		expect(inspectParams({ name: "Widget\u202e", nested: [{ title: "ok" }] })).toEqual([expect.objectContaining({ field: "name", message: "name must not contain invisible formatting characters (found U+202E)" })]);
		expect(inspectParams({ ["ke\u200by"]: 1 })).toEqual([expect.objectContaining({ type: "stringText" })]);
	});

	it("keeps single-line fields on one line: no U+2028/U+2029, no formatting characters", () => {
		for (const bad of ["a\u2028b", "a\u2029", "x\u202ey", "\ufeffx", "a\nb"]) expect([bad, SINGLE_LINE.test(bad)]).toEqual([bad, false]);
		expect(SINGLE_LINE.test("Zoë’s Café 👩\u200d💻")).toBe(true);
		expect(forbiddenCharacter("a\u2028b")).toBe("U+2028");
		expect(forbiddenCharacter("a\u2028b", true)).toBeUndefined();
	});
});

describe("a ?category= value that is one category's id and another's slug", () => {
	const real = { id: "3f0c2a9e-1b7d-4c55-9a0e-2d6f1e8b7c41", slug: "kettles" };
	const squatter = { id: "0a1b2c3d-0000-4000-8000-000000000001", slug: real.id };

	it("names the category with that id, in whatever order the categories come", () => {
		expect(findCategory(real.id, [squatter, real])).toBe(real);
		expect(findCategory(real.id, [real, squatter])).toBe(real);
		expect(findCategory("kettles", [squatter, real])).toBe(real);
		expect(findCategory("nothing", [squatter, real])).toBeUndefined();
	});

	it("does the same in the search index when it does not know the tree", () => {
		const index = new ProductSearchIndex();
		const doc = (id: string, c: { id: string; slug: string }) => ({ id, sku: id, name: `Thing ${id}`, description: "", brand: "B", categoryId: c.id, categorySlug: c.slug, categoryName: c.slug, priceAmount: 100, currency: "USD", inStock: true, ratingAverage: null, ratingCount: 0, createdAt: new Date(0).toISOString() });
		index.upsert(doc("in-squatter", squatter) as any);
		index.upsert(doc("in-real", real) as any);
		expect(index.search({ category: real.id, page: 1, pageSize: 10 }).items.map(d => d.id)).toEqual(["in-real"]);
		expect(index.search({ category: "kettles", page: 1, pageSize: 10 }).items.map(d => d.id)).toEqual(["in-real"]);
	});
});

describe("what an anonymous GET /health/ready tells", () => {
	it("keeps the status and the names of what is down or degraded, nothing else", () => {
		const report = { status: "unavailable" as const, nodeID: "host-1", services: ["api", "orders"], down: ["cache: connect ECONNREFUSED 10.0.0.5:6379", "orders:database", "needs:payments", "cache: again"], degraded: ["search: index 12 s behind"] };
		expect(publicReadiness(report)).toEqual({ status: "unavailable", down: ["cache", "needs:payments", "orders:database"], degraded: ["search"] });
		expect(publicReadiness({ status: "ok", down: [] })).toEqual({ status: "ok", down: [], degraded: [] });
	});
});
