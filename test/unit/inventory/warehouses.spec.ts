/**
 * Warehouse rules: admin input as the strict validator applies it, the view, the event
 * snapshot, and what can still be reserved when a warehouse is switched off.
 */
import { DEMO_WAREHOUSES, createWarehouseParams, totalAvailable, updateWarehouseParams, warehouseSnapshot, warehouseView } from "../../../lib/inventory/warehouses";
import { StrictValidator } from "../../../lib/validator";

const validator = new (StrictValidator as any)();
const checkCreate: (p: unknown) => true | { field?: string; actual?: unknown }[] = validator.compile(createWarehouseParams);
const checkUpdate: (p: unknown) => true | { field?: string; actual?: unknown }[] = validator.compile(updateWarehouseParams);
// A forbidden key is reported on the object (field undefined), naming the key in `actual`.
const fields = (r: true | { field?: string; actual?: unknown }[]) => (r === true ? [] : [...new Set(r.map(p => p.field ?? String(p.actual)))]);
const address = { line1: "1 Dock Road", city: "Newark", postalCode: "07114", country: "US" };

describe("warehouse input", () => {
	it("takes a name and a full address, and an id of letters, digits, _ and - if the shop chooses one", () => {
		expect(checkCreate({ name: "East", address })).toBe(true);
		expect(checkCreate({ id: "wh_east-1", name: "East", address: { ...address, line2: "Dock 4" } })).toBe(true);
		expect(fields(checkCreate({ id: "wh/east", name: "East", address }))).toEqual(["id"]);
		expect(fields(checkCreate({ name: "East", address: { ...address, country: "usa" } }))).toEqual(["address.country"]);
		expect(fields(checkCreate({ name: "East", address: { ...address, city: undefined } }))).toEqual(["address.city"]);
		expect(fields(checkCreate({ name: "East\u0000", address }))).toEqual(["name"]);
		expect(fields(checkCreate({ name: "East", address, active: true }))).toEqual(["active"]);
	});

	it("lets a PATCH rename, re-address (the whole address) and switch a warehouse on or off", () => {
		expect(checkUpdate({ id: "w", active: false })).toBe(true);
		expect(checkUpdate({ id: "w", name: "N", address })).toBe(true);
		expect(fields(checkUpdate({ id: "w", address: { city: "Reno" } }))).toEqual(["address.line1", "address.postalCode", "address.country"]);
		expect(fields(checkUpdate({ id: "w", active: "no" }))).toEqual(["active"]);
	});
});

describe("a warehouse across the boundary", () => {
	const row = { id: "w1", name: "East", line1: "1 Dock Road", line2: null, city: "Newark", postal_code: "07114", country: "US", active: 0, updated_at: new Date("2026-01-02T03:04:05.006Z") };
	it("shows admins its address and whether it is active (SQLite's 0/1 as booleans)", () => {
		expect(warehouseView(row)).toEqual({ id: "w1", name: "East", address: { line1: "1 Dock Road", line2: null, city: "Newark", postalCode: "07114", country: "US" }, active: false });
	});
	it("tells consumers its country and state", () => {
		expect(warehouseSnapshot({ ...row, active: 1 })).toEqual({ warehouseId: "w1", name: "East", country: "US", active: true, updatedAt: "2026-01-02T03:04:05.006Z" });
	});
	it("comes as demo data only with addresses", () => {
		for (const w of DEMO_WAREHOUSES) expect(checkCreate({ id: w.id, name: w.name, address: w.address })).toBe(true);
	});
});

describe("what can still be reserved", () => {
	it("counts on hand minus reserved in active warehouses only", () => {
		expect(totalAvailable([{ on_hand: 10, reserved: 3, active: true }, { on_hand: 5, reserved: 0, active: false }, { on_hand: 2, reserved: 2, active: 1 }, { on_hand: 9, reserved: 0, active: null }])).toBe(7);
		expect(totalAvailable([])).toBe(0);
	});
});
