/**
 * Bulk upsert by SKU (catalogue import): what one imported row does to the catalog — create a
 * product, update the fields that differ, change nothing, or be refused with a reason. The same
 * product rules as `POST /products` (lib/catalog/product.ts) decide what is valid, so an import
 * can store nothing the API would refuse. Pure: the catalog service loads the rows it compares
 * with and writes the outcome.
 */
import { characterProblem } from "../text";
import { type ProductInput, type ProductRecord, checkAttributes } from "./product";

/** What an import row gives: only the fields whose column the file has; the category by slug. */
export interface ImportedProduct {
	sku: string;
	name?: string;
	description?: string;
	brand?: string;
	category?: string;
	price?: { amount: number; currency: string };
	weightGrams?: number;
	status?: string;
	attributes?: Record<string, unknown>;
	images?: string[];
}

export type RowPlan =
	| { kind: "create"; input: ProductInput }
	| { kind: "update"; patch: Partial<Omit<ProductInput, "sku">> }
	| { kind: "unchanged" }
	| { kind: "refused"; reason: string };

/** The product rules as a check: `true`, or the validator's problems (fastest-validator's shape). */
export type ProductCheck = (input: Record<string, unknown>) => true | { field?: string; message?: string }[];

/** The weight of a new product whose row gives none (API.md: `weightGrams` defaults to 500). */
export const DEFAULT_WEIGHT_GRAMS = 500;

const FIELDS = ["name", "description", "brand", "categoryId", "price", "attributes", "images", "weightGrams", "status"] as const;

/** The product as it is now, in the input's shape, to merge a row into and compare with. */
function currentInput(p: ProductRecord): ProductInput {
	return {
		sku: p.sku,
		name: p.name,
		description: p.description,
		brand: p.brand,
		categoryId: p.category_id,
		price: { amount: p.price_amount, currency: p.currency },
		attributes: p.attributes as ProductInput["attributes"],
		images: p.images,
		weightGrams: p.weight_grams,
		status: p.status as "active" | "draft",
	};
}

/** JSON with object keys sorted: two attribute objects are equal whatever order their keys came in. */
function canonical(value: unknown): string {
	return JSON.stringify(value, (_k, v) => (v && typeof v === "object" && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : v));
}

/** The first character no product text may hold (control and invisible formatting characters, lone surrogates; lib/text.ts), with where it is. */
export function textProblem(input: ProductInput): string | undefined {
	const lines: [string, unknown][] = [
		["sku", input.sku],
		["name", input.name],
		["brand", input.brand],
		...(input.images ?? []).map((u, i) => [`images[${i}]`, u] as [string, unknown]),
		...Object.entries(input.attributes ?? {}).flatMap(([k, v]) => [
			[`attributes key`, k],
			[`attributes.${k}`, v],
		]) as [string, unknown][],
	];
	for (const [field, value] of lines) {
		const bad = typeof value === "string" ? characterProblem(value) : undefined;
		if (bad) return `${field} ${bad}`;
	}
	const bad = characterProblem(input.description ?? "", true);
	return bad ? `description ${bad}` : undefined;
}

/**
 * What `row` does given the product stored under its SKU (any case) and its category's id.
 * The merged product must pass `check` (the create rules) and the text rules; only fields that
 * differ are patched, so importing the same file twice changes nothing the second time.
 */
export function planRow(row: ImportedProduct, existing: ProductRecord | undefined, categoryId: string, check: ProductCheck): RowPlan {
	if (existing?.status === "archived") return { kind: "refused", reason: `SKU ${existing.sku} belongs to an archived product` };
	const base: Partial<ProductInput> = existing ? currentInput(existing) : { description: "", attributes: {}, images: [], weightGrams: DEFAULT_WEIGHT_GRAMS, status: "active" };
	const given = Object.fromEntries(Object.entries({ ...row, category: undefined, categoryId }).filter(([, v]) => v !== undefined));
	// Validated on a copy: the validator's sanitizers (trim) apply to what is stored and compared.
	const input = structuredClone({ ...base, ...given, sku: existing?.sku ?? row.sku }) as ProductInput;
	const checked = check(input as unknown as Record<string, unknown>);
	if (checked !== true) return { kind: "refused", reason: checked.map(p => p.message ?? `${p.field} is invalid`).join("; ") };
	try {
		checkAttributes(input.attributes);
	} catch (err) {
		return { kind: "refused", reason: (err as { data?: { message: string }[] }).data?.[0]?.message ?? (err as Error).message };
	}
	const text = textProblem(input);
	if (text) return { kind: "refused", reason: text };
	if (!existing) return { kind: "create", input };

	const now = currentInput(existing);
	const patch: Record<string, unknown> = {};
	for (const f of FIELDS) if (canonical(input[f]) !== canonical(now[f])) patch[f] = input[f];
	return Object.keys(patch).length ? { kind: "update", patch } : { kind: "unchanged" };
}
