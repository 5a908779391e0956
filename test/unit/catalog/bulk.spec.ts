/**
 * What one imported row does to the catalog (lib/catalog/bulk.planRow): create, patch only what
 * differs, change nothing, or be refused with a reason — under the same rules as POST /products.
 */
import { DEFAULT_WEIGHT_GRAMS, type ImportedProduct, type ProductCheck, planRow, textProblem } from "../../../lib/catalog/bulk";
import { type ProductRecord, createParams } from "../../../lib/catalog/product";
import { StrictValidator } from "../../../lib/validator";

const check: ProductCheck = new (StrictValidator as any)().compile({ ...createParams });
const row = (extra: Partial<ImportedProduct> = {}): ImportedProduct => ({ sku: "KT-100", name: "Zephyr Kettle", brand: "Zephyr", category: "kitchen", price: { amount: 4599, currency: "USD" }, ...extra });
const stored = (extra: Partial<ProductRecord> = {}): ProductRecord => ({
	id: "p1",
	sku: "KT-100",
	name: "Zephyr Kettle",
	description: "",
	brand: "Zephyr",
	category_id: "cat-kitchen",
	price_amount: 4599,
	currency: "USD",
	attributes: {},
	images: [],
	weight_grams: DEFAULT_WEIGHT_GRAMS,
	status: "active",
	rating_average: null,
	rating_count: 0,
	created_at: new Date(0),
	updated_at: new Date(0),
	...extra,
});

describe("an imported row", () => {
	it("creates a new product with the API's defaults for what the file leaves out", () => {
		expect(planRow(row(), undefined, "cat-kitchen", check)).toEqual({
			kind: "create",
			input: { sku: "KT-100", name: "Zephyr Kettle", brand: "Zephyr", categoryId: "cat-kitchen", price: { amount: 4599, currency: "USD" }, description: "", attributes: {}, images: [], weightGrams: 500, status: "active" },
		});
	});

	it("changes nothing when the product already is as the row says, whatever the order of its attributes", () => {
		const attrs = stored({ attributes: { color: "red", size: 2 } });
		expect(planRow(row({ attributes: { size: 2, color: "red" } }), attrs, "cat-kitchen", check)).toEqual({ kind: "unchanged" });
		expect(planRow(row(), stored(), "cat-kitchen", check)).toEqual({ kind: "unchanged" });
	});

	it("patches only the fields that differ, keeping those whose column the file does not have", () => {
		const current = stored({ description: "Keeps water hot.", weight_grams: 900, status: "draft" });
		expect(planRow(row({ price: { amount: 4999, currency: "USD" }, name: "Zephyr Kettle 2" }), current, "cat-kitchen", check)).toEqual({
			kind: "update",
			patch: { price: { amount: 4999, currency: "USD" }, name: "Zephyr Kettle 2" },
		});
		expect(planRow(row({ description: "" }), current, "cat-other", check)).toEqual({ kind: "update", patch: { description: "", categoryId: "cat-other" } });
	});

	it("updates the product stored under the SKU in another case, keeping the stored SKU", () => {
		expect(planRow(row({ sku: "kt-100", name: "New" }), stored(), "cat-kitchen", check)).toEqual({ kind: "update", patch: { name: "New" } });
	});

	it("is refused for an archived product", () => {
		expect(planRow(row(), stored({ status: "archived" }), "cat-kitchen", check)).toEqual({ kind: "refused", reason: "SKU KT-100 belongs to an archived product" });
	});

	it("is refused, with the validator's reason, for what POST /products refuses", () => {
		const refused = (r: ImportedProduct) => {
			const p = planRow(r, undefined, "cat-kitchen", check);
			return p.kind === "refused" ? p.reason : p.kind;
		};
		expect(refused(row({ price: { amount: 100_000_001, currency: "USD" } }))).toMatch(/price\.amount/);
		expect(refused(row({ price: { amount: 100, currency: "EUR" } }))).toMatch(/currency/);
		expect(refused(row({ name: "" }))).toMatch(/name/);
		expect(refused(row({ status: "archived" }))).toMatch(/status/);
		expect(refused(row({ images: ["not a url"] }))).toMatch(/images/);
		expect(refused(row({ attributes: { nested: { a: 1 } } as any }))).toMatch(/attributes/);
		expect(refused(row({ attributes: Object.fromEntries(Array.from({ length: 31 }, (_, i) => [`a${i}`, i])) }))).toBe("at most 30 attributes");
		expect(refused({ ...row(), foo: 1 } as any)).toMatch(/foo/);
	});

	it("is refused when any text holds a control character, saying where", () => {
		const reason = (r: ImportedProduct) => (planRow(r, undefined, "c", check) as { reason?: string }).reason;
		expect(reason(row({ name: "Nul\u0000Kettle" }))).toBe("name must not contain control characters (found U+0000)");
		expect(reason(row({ brand: "Ze\u0007phyr" }))).toBe("brand must not contain control characters (found U+0007)");
		expect(reason(row({ attributes: { color: "r\u0000ed" } }))).toBe("attributes.color must not contain control characters (found U+0000)");
		expect(reason(row({ description: "bad \u0000 byte" }))).toBe("description must not contain control characters (found U+0000)");
		// Line breaks and tabs are fine in a description, and only there.
		expect(planRow(row({ description: "two\nlines\tand a tab" }), undefined, "c", check).kind).toBe("create");
		expect(textProblem({ sku: "A", name: "two\nlines", brand: "B", categoryId: "c", price: { amount: 1, currency: "USD" }, weightGrams: 1 })).toBe("name must not contain control characters (found U+000A)");
	});
});
