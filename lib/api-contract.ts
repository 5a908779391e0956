/**
 * What each public operation answers, from shared/API.md: a one-line summary, its success status
 * (creates 201, deletes without a body 204), the response schema and an example, and for creates
 * the `Location` of what was created. The OpenAPI document (lib/openapi.ts) and the gateway's
 * `Location` header both read this table; the request side comes from the actions' own params.
 */

type Schema = Record<string, unknown>;
const ref = (name: string): Schema => ({ $ref: `#/components/schemas/${name}` });
const page = (item: string): Schema => ({
	type: "object",
	required: ["items", "total", "page", "pageSize"],
	properties: { items: { type: "array", items: ref(item) }, total: { type: "integer", minimum: 0 }, page: { type: "integer", minimum: 1 }, pageSize: { type: "integer", minimum: 1, maximum: 100 } },
});
const items = (item: Schema): Schema => ({ type: "object", required: ["items"], properties: { items: { type: "array", items: item } } });
const str = { type: "string" };
const int = { type: "integer" };
const ts = { type: "string", format: "date-time" };
const nullable = (s: Schema): Schema => ({ anyOf: [s, { type: "null" }] });

/** Reusable response shapes (OpenAPI `components.schemas`), as API.md gives them. */
export const SCHEMAS: Record<string, Schema> = {
	Money: { type: "object", required: ["amount", "currency"], properties: { amount: { type: "integer", description: "minor units (cents)" }, currency: { type: "string", pattern: "^[A-Z]{3}$" } }, example: { amount: 1999, currency: "USD" } },
	Address: {
		type: "object",
		required: ["line1", "city", "postalCode", "country"],
		properties: { id: str, line1: str, line2: str, city: str, postalCode: str, country: { type: "string", description: "ISO 3166-1 alpha-2", pattern: "^[A-Z]{2}$" }, isDefault: { type: "boolean" } },
		example: { id: "6f1c…", line1: "1 Main St", city: "Springfield", postalCode: "12345", country: "US", isDefault: true },
	},
	Session: {
		type: "object",
		required: ["accessToken", "refreshToken", "expiresIn"],
		properties: { accessToken: str, refreshToken: str, expiresIn: { type: "integer", description: "seconds" }, user: { type: "object", properties: { id: str, typ: { enum: ["customer", "admin"] }, roles: { type: "array", items: str } } } },
		example: { accessToken: "eyJhbGciOiJIUzI1NiJ9…", refreshToken: "rt_…", expiresIn: 900, user: { id: "c1…", typ: "customer", roles: [] } },
	},
	Registration: { type: "object", required: ["customer", "accessToken", "refreshToken", "expiresIn"], properties: { customer: ref("Customer"), accessToken: str, refreshToken: str, expiresIn: int } },
	Customer: { type: "object", required: ["id", "email", "firstName", "lastName"], properties: { id: str, email: { type: "string", format: "email" }, firstName: str, lastName: str, phone: nullable(str), addresses: { type: "array", items: ref("Address") } } },
	AdminUser: { type: "object", required: ["id", "email", "name", "roles"], properties: { id: str, email: { type: "string", format: "email" }, name: str, roles: { type: "array", items: { enum: ["superadmin", "catalog", "ops", "support"] } }, createdAt: ts } },
	Category: { type: "object", required: ["id", "slug", "name"], properties: { id: str, slug: str, name: str, parentId: nullable(str) } },
	Product: {
		type: "object",
		required: ["id", "sku", "name", "price", "status"],
		properties: {
			id: str,
			sku: str,
			name: str,
			description: str,
			price: ref("Money"),
			categoryId: str,
			brand: str,
			attributes: { type: "object" },
			images: { type: "array", items: str },
			status: { enum: ["active", "draft", "archived"] },
			rating: nullable({ type: "object", properties: { average: { type: "number" }, count: int } }),
			availability: nullable({ type: "object", properties: { inStock: { type: "boolean" }, quantity: int } }),
		},
		example: { id: "81fc…", sku: "HDP-100", name: "Wireless headphones", price: { amount: 7999, currency: "USD" }, status: "active", rating: { average: 4.5, count: 12 }, availability: { inStock: true, quantity: 40 } },
	},
	SearchResult: { allOf: [page("Product"), { type: "object", properties: { facets: { type: "object", properties: { category: { type: "array" }, brand: { type: "array" }, price: { type: "array" } } } } }] },
	Review: { type: "object", required: ["id", "rating"], properties: { id: str, rating: { type: "integer", minimum: 1, maximum: 5 }, title: str, body: str, authorName: str, verifiedPurchase: { type: "boolean" }, status: { enum: ["PENDING", "PUBLISHED", "REJECTED"] }, productId: str, createdAt: ts } },
	CartLine: { type: "object", required: ["productId", "quantity"], properties: { productId: str, name: str, unitPrice: ref("Money"), quantity: { type: "integer", minimum: 1, maximum: 99 }, lineTotal: ref("Money") } },
	Cart: { type: "object", required: ["items", "subtotal", "itemCount"], properties: { items: { type: "array", items: ref("CartLine") }, subtotal: ref("Money"), itemCount: int } },
	ShippingRates: items({ type: "object", properties: { method: str, price: ref("Money"), estimatedDays: int } }),
	Order: {
		type: "object",
		required: ["id", "number", "status", "items", "total"],
		properties: {
			id: str,
			number: str,
			status: { enum: ["PENDING", "CONFIRMED", "SHIPPED", "DELIVERED", "REJECTED", "CANCELLED"] },
			failureReason: nullable({ enum: ["OUT_OF_STOCK", "PAYMENT_DECLINED", "INSUFFICIENT_FUNDS", "PAYMENT_UNAVAILABLE", "FULFILLMENT_FAILED", "PRODUCT_UNAVAILABLE"] }),
			items: { type: "array", items: { type: "object", properties: { productId: str, sku: str, name: str, unitPrice: ref("Money"), quantity: int } } },
			subtotal: ref("Money"),
			shipping: ref("Money"),
			tax: ref("Money"),
			total: ref("Money"),
			shippingAddress: ref("Address"),
			// In every view (GET /orders/:id, lists, checkout answers); left out when its service cannot answer (or, in a checkout answer, when the saga cannot tell) — never null.
			payment: { type: "object", properties: { status: str } },
			fulfillments: { type: "array", items: { type: "object", properties: { id: str, status: str, trackingNumber: nullable(str) } } },
			history: { type: "array", items: { type: "object", properties: { status: str, at: ts } } },
			refunds: { type: "array", items: { type: "object", properties: { amount: ref("Money"), at: ts } } },
			refundedTotal: ref("Money"),
			createdAt: ts,
		},
		example: { id: "531b…", number: "MC-100042", status: "CONFIRMED", failureReason: null, total: { amount: 8499, currency: "USD" }, history: [{ status: "PENDING", at: "2026-01-01T10:00:00.000Z" }, { status: "CONFIRMED", at: "2026-01-01T10:00:00.420Z" }] },
	},
	Payment: {
		type: "object",
		required: ["id", "orderId", "status", "amount"],
		properties: { id: str, orderId: str, status: { enum: ["AUTHORIZED", "CAPTURED", "PARTIALLY_REFUNDED", "REFUNDED", "VOIDED", "FAILED"] }, amount: ref("Money"), captured: ref("Money"), refunded: ref("Money") },
	},
	Warehouse: {
		type: "object",
		required: ["id", "name", "address", "active"],
		properties: { id: str, name: str, address: { type: "object", properties: { line1: str, city: str, postalCode: str, country: { type: "string", pattern: "^[A-Z]{2}$" } } }, active: { type: "boolean" } },
		example: { id: "wh-east", name: "East", address: { line1: "1 Dock Rd", city: "Newark", postalCode: "07114", country: "US" }, active: true },
	},
	Stock: { type: "object", required: ["sku", "warehouses"], properties: { sku: str, warehouses: { type: "array", items: { type: "object", properties: { warehouseId: str, onHand: int, reserved: int, available: int } } } } },
	Fulfillment: { type: "object", required: ["id", "status"], properties: { id: str, orderId: str, status: { enum: ["PENDING", "PICKED", "PACKED", "SHIPPED", "DELIVERED", "CANCELLED"] }, trackingNumber: nullable(str) } },
	Shipment: { type: "object", required: ["trackingNumber", "status", "events"], properties: { trackingNumber: str, status: str, events: { type: "array", items: { type: "object", properties: { status: str, at: ts } } } } },
};

export interface OperationContract {
	summary: string;
	/** The success status of API.md. */
	status: 200 | 201 | 202 | 204;
	/** The success body (absent for 204). */
	schema?: Schema;
	/** Other success answers, e.g. 202 for a checkout still running. */
	also?: Record<string, { description: string; schema?: Schema }>;
	/** Where a created resource can be read (the `Location` of a 201). */
	location?: (data: any, params: Record<string, any>) => string | undefined;
}

const V1 = "/api/v1";

/** Public operations by action name (services/edge/routes.ts maps paths to them). */
export const CONTRACT: Record<string, OperationContract> = {
	"auth.register": { summary: "Register a customer (and sign in)", status: 201, schema: ref("Registration"), location: () => `${V1}/customers/me` },
	"auth.login": { summary: "Sign in (customer or admin)", status: 200, schema: ref("Session") },
	"auth.refresh": { summary: "Exchange a refresh token for a new pair", status: 200, schema: ref("Session") },
	"auth.logout": { summary: "Sign out: the session's tokens stop working", status: 204 },
	"customers.me": { summary: "My profile", status: 200, schema: ref("Customer") },
	"customers.updateMe": { summary: "Update my profile", status: 200, schema: ref("Customer") },
	"customers.addAddress": { summary: "Add an address", status: 201, schema: ref("Address"), location: () => `${V1}/customers/me` },
	"customers.removeAddress": { summary: "Remove an address", status: 204 },
	"users.list": { summary: "List admin users", status: 200, schema: items(ref("AdminUser")) },
	"users.create": { summary: "Create an admin user", status: 201, schema: ref("AdminUser"), location: () => `${V1}/admin/users` },
	"catalog.categories": { summary: "List categories", status: 200, schema: items(ref("Category")) },
	"catalog.createCategory": { summary: "Create a category", status: 201, schema: ref("Category"), location: () => `${V1}/categories` },
	"catalog.updateCategory": { summary: "Rename or move a category", status: 200, schema: ref("Category") },
	"catalog.deleteCategory": { summary: "Delete an empty category", status: 204 },
	"catalog.list": { summary: "List active products", status: 200, schema: page("Product") },
	"catalog.get": { summary: "One product, with rating and availability", status: 200, schema: ref("Product") },
	"catalog.create": { summary: "Create a product", status: 201, schema: ref("Product"), location: d => (d?.id ? `${V1}/products/${d.id}` : undefined) },
	"catalog.update": { summary: "Update a product", status: 200, schema: ref("Product") },
	"catalog.archive": { summary: "Archive a product", status: 204 },
	"search.search": { summary: "Search products (typo-tolerant, with facets)", status: 200, schema: ref("SearchResult") },
	"search.suggest": { summary: "Complete a product name", status: 200, schema: items({ type: "object", properties: { id: str, name: str } }) },
	"reviews.list": { summary: "Published reviews of a product", status: 200, schema: page("Review") },
	"reviews.submit": { summary: "Review a product I bought", status: 201, schema: { type: "object", properties: { id: str, status: str } }, location: (_d, p) => (p.id ? `${V1}/products/${p.id}/reviews` : undefined) },
	"reviews.moderationQueue": { summary: "Reviews by status (the moderation queue)", status: 200, schema: page("Review") },
	"reviews.approve": { summary: "Publish a held review", status: 200, schema: ref("Review") },
	"reviews.reject": { summary: "Reject a held review", status: 200, schema: ref("Review") },
	"cart.get": { summary: "My cart, at current prices", status: 200, schema: ref("Cart") },
	"cart.addItem": { summary: "Add a product to my cart", status: 200, schema: ref("Cart") },
	"cart.setQuantity": { summary: "Change a line's quantity (0 removes it)", status: 200, schema: ref("Cart") },
	"cart.removeItem": { summary: "Remove a line", status: 200, schema: ref("Cart") },
	"cart.clear": { summary: "Empty my cart", status: 204 },
	"shipping.rates": { summary: "Shipping methods and prices for an address", status: 200, schema: ref("ShippingRates") },
	"orders.create": {
		summary: "Check out (runs the checkout saga)",
		status: 201,
		schema: ref("Order"),
		also: { "202": { description: "Still running after CHECKOUT_WAIT_MS: status PENDING; poll GET /orders/{id}", schema: ref("Order") } },
		location: d => (d?.id ? `${V1}/orders/${d.id}` : undefined),
	},
	"orders.list": { summary: "My orders, newest first", status: 200, schema: page("Order") },
	"orders.get": { summary: "One order", status: 200, schema: ref("Order") },
	"orders.cancel": { summary: "Cancel an order (voids or refunds the payment, releases the stock): 200 once CANCELLED; 409 NOT_CANCELLABLE once shipped, 409 CANCELLATION_IN_PROGRESS while the cancellation still runs (repeat the request)", status: 200, schema: ref("Order") },
	"orders.adminList": { summary: "All orders", status: 200, schema: page("Order") },
	"payments.list": { summary: "Payments", status: 200, schema: page("Payment") },
	"payments.adminRefund": { summary: "Refund a captured payment (all or part)", status: 200, schema: ref("Payment") },
	"warehouse.listWarehouses": { summary: "Warehouses", status: 200, schema: items(ref("Warehouse")) },
	"warehouse.createWarehouse": { summary: "Create a warehouse", status: 201, schema: ref("Warehouse"), location: () => `${V1}/admin/warehouses` },
	"warehouse.updateWarehouse": { summary: "Update or deactivate a warehouse", status: 200, schema: ref("Warehouse") },
	"warehouse.stock": { summary: "Stock of a SKU per warehouse", status: 200, schema: ref("Stock") },
	"warehouse.setOnHand": { summary: "Set a SKU's on-hand quantity in a warehouse", status: 200, schema: ref("Stock") },
	"fulfillment.list": { summary: "Fulfillments", status: 200, schema: page("Fulfillment") },
	"fulfillment.pick": { summary: "Mark a fulfillment picked", status: 200, schema: ref("Fulfillment") },
	"fulfillment.pack": { summary: "Mark a fulfillment packed", status: 200, schema: ref("Fulfillment") },
	"fulfillment.ship": { summary: "Ship a fulfillment (creates a shipment)", status: 200, schema: ref("Fulfillment") },
	"fulfillment.deliver": { summary: "Mark a fulfillment delivered", status: 200, schema: ref("Fulfillment") },
	"shipping.track": { summary: "Track a shipment", status: 200, schema: ref("Shipment") },
};

/** The `Location` of a 201 answer of `action`, if the contract names one. */
export function locationFor(action: string, data: unknown, params: Record<string, any>): string | undefined {
	return CONTRACT[action]?.location?.(data, params ?? {});
}
