/**
 * The public REST contract (shared/API.md) as one table: path → action. The gateway knows every
 * route even while the service behind it is down, so a missing service answers 503, not 404.
 */
export const PUBLIC_ROUTES: Record<string, string> = {
	// Identity
	"POST /auth/register": "auth.register",
	"POST /auth/login": "auth.login",
	"POST /auth/refresh": "auth.refresh",
	"POST /auth/logout": "auth.logout",
	"GET /customers/me": "customers.me",
	"PATCH /customers/me": "customers.updateMe",
	"POST /customers/me/addresses": "customers.addAddress",
	"DELETE /customers/me/addresses/:id": "customers.removeAddress",
	"GET /admin/users": "users.list",
	"POST /admin/users": "users.create",

	// Catalog, search, reviews
	"GET /categories": "catalog.categories",
	"POST /categories": "catalog.createCategory",
	"PATCH /categories/:id": "catalog.updateCategory",
	"DELETE /categories/:id": "catalog.deleteCategory",
	"GET /products": "catalog.list",
	"GET /products/:id": "catalog.get",
	"POST /products": "catalog.create",
	"PATCH /products/:id": "catalog.update",
	"DELETE /products/:id": "catalog.archive",
	"GET /search": "search.search",
	"GET /search/suggest": "search.suggest",
	"GET /products/:id/reviews": "reviews.list",
	"POST /products/:id/reviews": "reviews.submit",
	"GET /admin/reviews": "reviews.moderationQueue",
	"POST /admin/reviews/:id/approve": "reviews.approve",
	"POST /admin/reviews/:id/reject": "reviews.reject",

	// Cart
	"GET /cart": "cart.get",
	"POST /cart/items": "cart.addItem",
	"PATCH /cart/items/:productId": "cart.setQuantity",
	"DELETE /cart/items/:productId": "cart.removeItem",
	"DELETE /cart": "cart.clear",

	// Checkout and orders
	"POST /shipping/rates": "shipping.rates",
	"POST /orders": "orders.create",
	"GET /orders": "orders.list",
	"GET /orders/:id": "orders.get",
	"POST /orders/:id/cancel": "orders.cancel",
	"GET /admin/orders": "orders.adminList",

	// Payments, inventory, fulfillment
	"GET /admin/payments": "payments.list",
	"POST /admin/payments/:id/refund": "payments.adminRefund",
	"GET /admin/warehouses": "warehouse.listWarehouses",
	"POST /admin/warehouses": "warehouse.createWarehouse",
	"PATCH /admin/warehouses/:id": "warehouse.updateWarehouse",
	"GET /admin/inventory/:sku": "warehouse.stock",
	"PUT /admin/inventory/:sku": "warehouse.setOnHand",
	"GET /admin/fulfillments": "fulfillment.list",
	"POST /admin/fulfillments/:id/pick": "fulfillment.pick",
	"POST /admin/fulfillments/:id/pack": "fulfillment.pack",
	"POST /admin/fulfillments/:id/ship": "fulfillment.ship",
	"POST /admin/fulfillments/:id/deliver": "fulfillment.deliver",
	"GET /shipments/:trackingNumber": "shipping.track",
};

/** Stricter rate limits: credential guessing and account spam. */
export const AUTH_LIMITED_ACTIONS = new Set(["auth.login", "auth.register", "auth.refresh"]);
