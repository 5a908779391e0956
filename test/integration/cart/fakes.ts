/**
 * Stand-ins for the services the cart and shipping tests do not exercise: a catalog answering
 * `getMany` from a table the test controls, an auth service whose sessions are all alive, and a
 * small HTTP client for the real gateway.
 */
import type { ServiceBroker, ServiceSchema } from "moleculer";
import { signAccessToken } from "../../../lib/tokens";

export interface FakeProduct {
	id: string;
	sku: string;
	name: string;
	price: { amount: number; currency: string };
	status: "active" | "draft" | "archived";
	weightGrams: number;
}

export function product(id: string, amount: number, weightGrams = 500, status: FakeProduct["status"] = "active"): FakeProduct {
	return { id, sku: `SKU-${id}`, name: `Product ${id}`, price: { amount, currency: "USD" }, status, weightGrams };
}

/** `catalog.getMany` over `products`; `calls` counts the look-ups. */
export function fakeCatalog(products: Map<string, FakeProduct>, calls = { getMany: 0 }): ServiceSchema {
	return {
		name: "catalog",
		actions: {
			getMany: {
				params: { ids: { type: "array", items: "string|max:64", max: 500 } },
				handler(ctx: any) {
					calls.getMany++;
					return (ctx.params.ids as string[]).flatMap(id => (products.has(id) ? [{ ...products.get(id)! }] : []));
				},
			},
		},
	};
}

export const fakeAuth: ServiceSchema = {
	name: "auth",
	actions: { sessionActive: { params: { sid: "string" }, handler: () => true } },
};

export function customerToken(id: string): string {
	return signAccessToken({ sub: id, typ: "customer", roles: [], sid: `sid-${id}` }).token;
}

export function adminToken(id: string, roles: string[]): string {
	return signAccessToken({ sub: id, typ: "admin", roles, sid: `sid-${id}` }).token;
}

export interface HttpAnswer {
	status: number;
	body: any;
}

/** A client for the gateway of `broker` (its `api` service listens on a port of its own choosing). */
export function httpClient(broker: ServiceBroker) {
	const port = (broker.getLocalService("api") as any).server.address().port;
	return async (method: string, path: string, opts: { token?: string; body?: unknown; raw?: string } = {}): Promise<HttpAnswer> => {
		const headers: Record<string, string> = {};
		if (opts.token) headers.authorization = `Bearer ${opts.token}`;
		const body = opts.raw ?? (opts.body === undefined ? undefined : JSON.stringify(opts.body));
		if (body !== undefined) headers["content-type"] = "application/json";
		const res = await fetch(`http://127.0.0.1:${port}${path}`, { method, headers, body });
		const text = await res.text();
		return { status: res.status, body: text ? JSON.parse(text) : null };
	};
}
