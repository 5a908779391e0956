/**
 * Every service of the platform, by name, grouped by domain as in the design. `SERVICES` picks a
 * subset per node; the embedded default runs them all in one process.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { ServiceSchema } from "moleculer";

export const SERVICE_FILES: Record<string, string> = {
	api: "edge/api.service",
	auth: "customer/auth.service",
	customers: "customer/customers.service",
	users: "customer/users.service",
	catalog: "content/catalog.service",
	search: "content/search.service",
	reviews: "content/reviews.service",
	cart: "commerce/cart.service",
	orders: "commerce/orders.service",
	payments: "commerce/payments.service",
	warehouse: "inventory/warehouse.service",
	fulfillment: "inventory/fulfillment.service",
	shipping: "inventory/shipping.service",
};

function moduleFile(name: string): string | undefined {
	const rel = SERVICE_FILES[name];
	if (!rel) return undefined;
	const base = join(__dirname, rel);
	return [".js", ".ts"].map(ext => base + ext).find(f => existsSync(f));
}

/** Services whose module exists in this build. */
export function availableServices(): string[] {
	return Object.keys(SERVICE_FILES).filter(n => moduleFile(n));
}

export function loadServiceSchema(name: string): ServiceSchema {
	const file = moduleFile(name);
	if (!file) {
		const known = availableServices().join(", ");
		throw new Error(`Unknown service '${name}' in SERVICES (known: ${known})`);
	}
	const mod = require(file);
	return (mod.default ?? mod) as ServiceSchema;
}
