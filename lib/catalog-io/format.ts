/**
 * The catalogue CSV format (docs/FIRST-RUN.md, "Catalogue files"): one product per row, one
 * column per product field, the category by its slug, stock per warehouse in `stock:<warehouseId>`
 * columns. Import reads it and export writes it, so an exported file imports as "unchanged".
 * Pure: cells in, typed fields or a reason out; the catalog service applies its own product
 * rules (lib/catalog/product.ts) to what this yields.
 *
 * | column          | cell                                                  | empty cell                      |
 * |-----------------|-------------------------------------------------------|---------------------------------|
 * | sku             | the product's key (import is idempotent by SKU)        | refused                         |
 * | name, brand     | text                                                  | refused by the product rules    |
 * | description     | text, line breaks allowed                             | no description                  |
 * | category        | a category slug (`headphones`)                         | refused                         |
 * | price           | major units with up to 2 decimals: `19.99`, `20`      | refused                         |
 * | currency        | `USD`                                                 | USD                             |
 * | weightGrams     | whole grams                                           | 500 for a new product, else kept |
 * | status          | `active` or `draft`                                   | active for a new product, else kept |
 * | attributes      | a JSON object: `{"color":"black","warrantyMonths":24}` | no attributes                   |
 * | images          | URLs separated by `|`                                 | no images                       |
 * | stock:<id>      | units on hand in warehouse `<id>`, whole number ≥ 0    | stock left as it is             |
 *
 * A column that is not in the file leaves that field of an existing product as it is.
 */

import type { ImportedProduct } from "../catalog/bulk";
import { textProblem } from "../text";

export const REQUIRED_COLUMNS = ["sku", "name", "brand", "category", "price"] as const;
export const PRODUCT_COLUMNS = ["sku", "name", "description", "brand", "category", "price", "currency", "weightGrams", "status", "attributes", "images"] as const;
export type ProductColumn = (typeof PRODUCT_COLUMNS)[number];
export const STOCK_PREFIX = "stock:";
/** The separator of image URLs in one cell (a URL holds `|` only percent-encoded). */
export const IMAGE_SEPARATOR = "|";

/** Where each column sits in a row. */
export interface Header {
	columns: Partial<Record<ProductColumn, number>>;
	/** warehouse id → column index */
	stock: Map<string, number>;
	width: number;
}

/** The product fields a row gives, only those whose column the file has (what catalog.importProducts takes). */
export type ProductFields = ImportedProduct;

export interface StockCell {
	warehouseId: string;
	onHand: number;
}

export type ParsedRow = { ok: true; product: ProductFields; stock: StockCell[] } | { ok: false; sku?: string; reason: string };

/** Reads the header row; every problem at once (unknown, repeated or missing columns), so one fix round is enough. */
export function parseHeader(cells: string[]): { ok: true; header: Header } | { ok: false; problems: string[] } {
	const problems: string[] = [];
	const columns: Header["columns"] = {};
	const stock = new Map<string, number>();
	const seen = new Set<string>();
	cells.forEach((raw, i) => {
		const name = raw.trim();
		if (seen.has(name)) problems.push(`column "${name}" appears twice`);
		seen.add(name);
		if (name.startsWith(STOCK_PREFIX)) {
			const warehouseId = name.slice(STOCK_PREFIX.length).trim();
			if (!warehouseId) problems.push(`column "${name}" names no warehouse (stock:<warehouseId>)`);
			else stock.set(warehouseId, i);
		} else if ((PRODUCT_COLUMNS as readonly string[]).includes(name)) {
			columns[name as ProductColumn] = i;
		} else {
			problems.push(`unknown column "${name}" (columns: ${PRODUCT_COLUMNS.join(", ")}, ${STOCK_PREFIX}<warehouseId>)`);
		}
	});
	for (const c of REQUIRED_COLUMNS) if (columns[c] === undefined) problems.push(`required column "${c}" is missing`);
	return problems.length ? { ok: false, problems } : { ok: true, header: { columns, stock, width: cells.length } };
}

const PRICE = /^(\d{1,9})(?:\.(\d{1,2}))?$/;
const WHOLE = /^\d{1,9}$/;

/** "19.99" → 1999 cents, by the digits (never through a float); undefined when it is not such a number. */
export function parsePrice(text: string): number | undefined {
	const m = PRICE.exec(text.trim());
	if (!m) return undefined;
	return Number(m[1]) * 100 + Number((m[2] ?? "").padEnd(2, "0"));
}

/** 1999 cents → "19.99". */
export function formatPrice(cents: number): string {
	const whole = Math.trunc(cents / 100);
	return `${whole}.${String(cents % 100).padStart(2, "0")}`;
}

/** One data row into product fields and stock cells, or the reason it is refused. */
export function parseRow(header: Header, cells: string[]): ParsedRow {
	const cell = (c: ProductColumn) => (header.columns[c] === undefined ? undefined : (cells[header.columns[c]!] ?? ""));
	const sku = cell("sku")!.trim();
	if (cells.length !== header.width) return { ok: false, sku: sku || undefined, reason: `expected ${header.width} columns, found ${cells.length}` };
	if (!sku) return { ok: false, reason: "sku is empty" };
	// The platform refuses control characters and lone surrogates in any text (lib/text.ts): a row
	// holding one is refused here, by itself, instead of failing the whole batch at the validator.
	const names: [string, number][] = [...Object.entries(header.columns), ...[...header.stock].map(([w, i]) => [`stock:${w}`, i] as [string, number])];
	for (const [name, i] of names) {
		const problem = textProblem(cells[i] ?? "");
		if (problem) return { ok: false, sku: textProblem(sku) ? undefined : sku, reason: `${name} ${problem}` };
	}
	const product: ProductFields = { sku };
	const fail = (reason: string): ParsedRow => ({ ok: false, sku, reason });

	for (const c of ["name", "brand"] as const) {
		const v = cell(c);
		if (v !== undefined) product[c] = v.trim();
	}
	const description = cell("description");
	if (description !== undefined) product.description = description;
	const category = cell("category")!.trim();
	if (!category) return fail("category is empty");
	product.category = category;

	const priceText = cell("price")!;
	const amount = parsePrice(priceText);
	if (amount === undefined) return fail(`price "${priceText}" is not an amount like 19.99`);
	const currency = cell("currency")?.trim();
	product.price = { amount, currency: currency || "USD" };

	const weight = cell("weightGrams")?.trim();
	if (weight) {
		if (!WHOLE.test(weight)) return fail(`weightGrams "${weight}" is not a whole number of grams`);
		product.weightGrams = Number(weight);
	}
	const status = cell("status")?.trim();
	if (status) product.status = status;

	const attributes = cell("attributes");
	if (attributes !== undefined) {
		const parsed = parseAttributes(attributes);
		if (parsed === undefined) return fail('attributes is not a JSON object like {"color":"black"}');
		product.attributes = parsed;
	}
	const images = cell("images");
	if (images !== undefined) {
		product.images = images
			.split(IMAGE_SEPARATOR)
			.map(u => u.trim())
			.filter(Boolean);
	}

	const stock: StockCell[] = [];
	for (const [warehouseId, i] of header.stock) {
		const v = (cells[i] ?? "").trim();
		if (!v) continue;
		if (!WHOLE.test(v)) return fail(`${STOCK_PREFIX}${warehouseId} "${v}" is not a whole number ≥ 0`);
		stock.push({ warehouseId, onHand: Number(v) });
	}
	return { ok: true, product, stock };
}

function parseAttributes(text: string): Record<string, unknown> | undefined {
	if (!text.trim()) return {};
	try {
		const v = JSON.parse(text);
		return v !== null && typeof v === "object" && !Array.isArray(v) ? v : undefined;
	} catch {
		return undefined;
	}
}

/** What export knows of a product: the catalog's view plus its category's slug. */
export interface ExportProduct {
	sku: string;
	name: string;
	description: string;
	brand: string;
	categorySlug: string;
	price: { amount: number; currency: string };
	weightGrams: number;
	status: string;
	attributes: Record<string, unknown>;
	images: string[];
}

/** The header export writes: every product column, then one stock column per warehouse. */
export function exportHeader(warehouseIds: string[]): string[] {
	return [...PRODUCT_COLUMNS, ...warehouseIds.map(w => `${STOCK_PREFIX}${w}`)];
}

/** One product as a row of `exportHeader(warehouseIds)`; a warehouse that never held the SKU → empty cell (import leaves it alone). */
export function formatRow(p: ExportProduct, stock: Record<string, number>, warehouseIds: string[]): string[] {
	return [
		p.sku,
		p.name,
		p.description,
		p.brand,
		p.categorySlug,
		formatPrice(p.price.amount),
		p.price.currency,
		String(p.weightGrams),
		p.status,
		Object.keys(p.attributes).length ? JSON.stringify(p.attributes) : "",
		p.images.join(IMAGE_SEPARATOR),
		...warehouseIds.map(w => (stock[w] === undefined ? "" : String(stock[w]))),
	];
}
