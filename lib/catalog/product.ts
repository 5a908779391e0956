/**
 * A product across the catalog's boundaries, kept pure: the admin input rules, the row a new
 * product becomes, the columns a PATCH changes, the public view and the event snapshot.
 */
import { UnprocessableError } from "../errors";
import type { ProductSnapshot } from "../events";
import { UNIT_PRICE_RULE } from "../money";
import { singleLine } from "../text";

/** A products row with its JSON columns already parsed. */
export interface ProductRecord {
	id: string;
	sku: string;
	name: string;
	description: string;
	brand: string;
	category_id: string;
	price_amount: number;
	currency: string;
	attributes: Record<string, unknown>;
	images: string[];
	weight_grams: number;
	status: "active" | "draft" | "archived";
	rating_average: number | null;
	rating_count: number;
	created_at: Date | string;
	updated_at: Date | string;
}

export interface ProductInput {
	sku: string;
	name: string;
	description?: string;
	brand: string;
	categoryId: string;
	price: { amount: number; currency: string };
	attributes?: Record<string, string | number | boolean>;
	images?: string[];
	/** Defaults to DEFAULT_WEIGHT_GRAMS (API.md). */
	weightGrams?: number;
	status?: "active" | "draft";
}

/**
 * API.md: a SKU is 1–64 letters, digits, `.`, `_`, `/` or `-` (real catalogues use lower case,
 * dots, underscores and slashes), unique regardless of case (the catalog's unique index on
 * lower(sku) decides: 409 SKU_TAKEN). In a path (`/admin/inventory/:sku`) a `/` is sent as %2F.
 */
export const SKU_PATTERN = /^[A-Za-z0-9._/-]{1,64}$/;
/** The fastest-validator rule of a SKU, for every service that takes one. */
export const SKU_RULE = { type: "string", pattern: SKU_PATTERN, messages: { stringPattern: "sku must be 1-64 letters, digits, '.', '_', '/' or '-'" } };
/** API.md: a product created without `weightGrams` weighs this much. */
export const DEFAULT_WEIGHT_GRAMS = 500;
/** "A small flat object": scalar values only, and not too many of them. */
export const MAX_ATTRIBUTES = 30;

/**
 * An image is an http(s) URL without a user name or password: every shopper sees the catalog's
 * image URLs, and `https://user:secret@cdn.example/x.jpg` would publish the secret with them.
 */
export const IMAGE_URL_RULE = {
	type: "url",
	max: 500,
	custom: (value: unknown, errors: { type: string; actual?: unknown }[]) => {
		if (typeof value === "string" && /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*@/i.test(value)) errors.push({ type: "urlCredentials" });
		return value;
	},
	messages: { urlCredentials: "The '{field}' field must not hold a user name or password." },
};

/** The fields an admin sets (fastest-validator; the broker's validator refuses any other). */
const productFields = {
	name: singleLine(1, 200),
	description: "string|max:5000",
	brand: singleLine(1, 80),
	categoryId: "string|min:1|max:64",
	price: { type: "object", strict: true, props: { amount: UNIT_PRICE_RULE, currency: { type: "equal", value: "USD" } } },
	attributes: { type: "record", key: "string|min:1|max:40", value: [{ type: "string", max: 200 }, { type: "number", min: -1e12, max: 1e12 }, { type: "boolean" }] },
	images: { type: "array", items: IMAGE_URL_RULE, max: 20 },
	weightGrams: "number|integer|min:1|max:100000",
	status: { type: "enum", values: ["active", "draft"] },
};

const optional = (rules: Record<string, unknown>) =>
	Object.fromEntries(Object.entries(rules).map(([k, r]) => [k, typeof r === "string" ? `${r}|optional` : { ...(r as object), optional: true }]));

export const createParams = {
	sku: SKU_RULE,
	...productFields,
	...optional({ description: productFields.description, attributes: productFields.attributes, images: productFields.images, weightGrams: productFields.weightGrams, status: productFields.status }),
};

/** PATCH: the same fields except the SKU, all optional. */
export const updateParams = { id: "string|max:64", ...optional(productFields) };

/** Rules the validator cannot express; a 422 shaped like its own. */
export function checkAttributes(attributes: Record<string, unknown> | undefined): void {
	if (attributes && Object.keys(attributes).length > MAX_ATTRIBUTES) {
		throw new UnprocessableError("Too many attributes", "VALIDATION_ERROR", [{ field: "attributes", message: `at most ${MAX_ATTRIBUTES} attributes` }]);
	}
}

export function newProductRecord(input: ProductInput, id: string, now: Date): ProductRecord {
	return {
		id,
		sku: input.sku,
		name: input.name,
		description: input.description ?? "",
		brand: input.brand,
		category_id: input.categoryId,
		price_amount: input.price.amount,
		currency: input.price.currency,
		attributes: input.attributes ?? {},
		images: input.images ?? [],
		weight_grams: input.weightGrams ?? DEFAULT_WEIGHT_GRAMS,
		status: input.status ?? "active",
		rating_average: null,
		rating_count: 0,
		created_at: now,
		updated_at: now,
	};
}

const PATCH_COLUMNS = { name: "name", description: "description", brand: "brand", categoryId: "category_id", attributes: "attributes", images: "images", weightGrams: "weight_grams", status: "status" } as const;

/** The columns a PATCH changes: only the fields it names. */
export function productChanges(patch: Partial<Omit<ProductInput, "sku">>, now: Date): Partial<ProductRecord> {
	const changes: Record<string, unknown> = { updated_at: now };
	for (const [field, column] of Object.entries(PATCH_COLUMNS)) {
		const value = patch[field as keyof typeof PATCH_COLUMNS];
		if (value !== undefined) changes[column] = value;
	}
	if (patch.price) Object.assign(changes, { price_amount: patch.price.amount, currency: patch.price.currency });
	return changes as Partial<ProductRecord>;
}

const iso = (d: Date | string) => new Date(d).toISOString();

/** What clients see of a product; never the row itself. */
export function productView(p: ProductRecord) {
	return {
		id: p.id,
		sku: p.sku,
		name: p.name,
		description: p.description,
		price: { amount: p.price_amount, currency: p.currency },
		categoryId: p.category_id,
		brand: p.brand,
		attributes: p.attributes,
		images: p.images,
		weightGrams: p.weight_grams,
		status: p.status,
		createdAt: iso(p.created_at),
		updatedAt: iso(p.updated_at),
	};
}

/** The payload of catalog.product.created / .updated. */
export function productSnapshot(p: ProductRecord, category: { slug: string; name: string } | undefined): ProductSnapshot {
	return {
		productId: p.id,
		sku: p.sku,
		name: p.name,
		description: p.description,
		brand: p.brand,
		categoryId: p.category_id,
		categorySlug: category?.slug ?? "",
		categoryName: category?.name ?? "",
		price: { amount: p.price_amount, currency: p.currency as "USD" },
		status: p.status,
		attributes: p.attributes,
		createdAt: iso(p.created_at),
		updatedAt: iso(p.updated_at),
		weightGrams: p.weight_grams,
		rating: p.rating_count ? { average: p.rating_average ?? 0, count: p.rating_count } : null,
	};
}
