/**
 * Warehouses (API.md, "Payments, inventory, fulfillment"): the input rules of the admin
 * endpoints, the public view, the event snapshot, the demo warehouses, and the rule that an
 * inactive warehouse takes no new reservations and counts for nothing in availability (stock
 * already reserved there stays reserved and ships). Pure.
 */
import type { WarehouseSnapshot } from "../events";
import { COUNTRY_RULE } from "../country";
import { singleLine } from "../text";

/** A warehouses row. */
export interface WarehouseRecord {
	id: string;
	name: string;
	line1: string | null;
	line2: string | null;
	city: string | null;
	postal_code: string | null;
	country: string | null;
	active: boolean | number;
	updated_at?: Date | string | null;
}

export interface WarehouseAddress {
	line1: string;
	line2?: string | null;
	city: string;
	postalCode: string;
	/** ISO 3166 alpha-2, upper case. */
	country: string;
}

/** Chosen by the shop ("wh-east", "berlin-1") or a UUID: letters, digits, `_` and `-`, as a stock key and in URLs. */
export const WAREHOUSE_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,35}$/;

const address = {
	type: "object",
	strict: true,
	props: {
		line1: singleLine(1, 200),
		line2: singleLine(0, 200, { optional: true, nullable: true }),
		city: singleLine(1, 100),
		postalCode: singleLine(1, 20),
		country: COUNTRY_RULE,
	},
};

/** POST /admin/warehouses (fastest-validator; the broker's validator refuses any other field). */
export const createWarehouseParams = {
	id: { type: "string", pattern: WAREHOUSE_ID, optional: true, messages: { stringPattern: "id: 1–36 letters, digits, _ or -, starting with a letter or digit" } },
	name: singleLine(1, 100),
	address,
};

/** PATCH /admin/warehouses/:id: an address replaces the whole address. */
export const updateWarehouseParams = {
	id: "string|min:1|max:64",
	name: singleLine(1, 100, { optional: true }),
	address: { ...address, optional: true },
	active: "boolean|optional",
};

export function warehouseColumns(a: WarehouseAddress) {
	return { line1: a.line1, line2: a.line2 ?? null, city: a.city, postal_code: a.postalCode, country: a.country };
}

/** What admins see of a warehouse (API.md: `{ id, name, address: { line1, city, postalCode, country }, active }`). */
export function warehouseView(w: WarehouseRecord) {
	return {
		id: w.id,
		name: w.name,
		address: w.country ? { line1: w.line1, line2: w.line2 ?? null, city: w.city, postalCode: w.postal_code, country: w.country } : null,
		active: Boolean(w.active),
	};
}

/** The payload of warehouse.warehouse.created / .updated. */
export function warehouseSnapshot(w: WarehouseRecord): WarehouseSnapshot {
	return { warehouseId: w.id, name: w.name, country: w.country, active: Boolean(w.active), updatedAt: new Date(w.updated_at ?? 0).toISOString() };
}

/** What can still be reserved of a SKU: on hand minus reserved, over its active warehouses only. */
export function totalAvailable(rows: { on_hand: number; reserved: number; active: boolean | number | null }[]): number {
	return rows.reduce((n, r) => n + (r.active ? r.on_hand - r.reserved : 0), 0);
}

/** The demo data's two warehouses (loaded with the demo catalog, never otherwise). */
export const DEMO_WAREHOUSES: { id: string; name: string; address: WarehouseAddress }[] = [
	{ id: "wh-east", name: "East (Newark)", address: { line1: "600 Port Street", city: "Newark", postalCode: "07114", country: "US" } },
	{ id: "wh-west", name: "West (Reno)", address: { line1: "1200 Commerce Way", city: "Reno", postalCode: "89502", country: "US" } },
];
