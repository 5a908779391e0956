/**
 * Integration events: one definition each (shared/DOMAIN.md). Names are
 * `<domain-entity>.<past-tense fact>`; every payload carries `eventId` and `occurredAt`, added
 * by the outbox when the event is recorded.
 */
export interface Money {
	amount: number;
	currency: string;
}

export interface EventEnvelope {
	eventId: string;
	occurredAt: string;
}

export interface ProductSnapshot {
	productId: string;
	sku: string;
	name: string;
	description: string;
	brand: string;
	categoryId: string;
	categorySlug: string;
	categoryName: string;
	price: Money;
	status: "active" | "draft" | "archived";
	attributes: Record<string, unknown>;
	createdAt: string;
	/** Consumers ignore a snapshot older than the one they hold (events may arrive out of order). */
	updatedAt: string;
	weightGrams: number;
	rating: { average: number; count: number } | null;
}

/** The payload of catalog.category.created / .updated: the category as it is after the change. */
export interface CategorySnapshot {
	categoryId: string;
	slug: string;
	name: string;
	parentId: string | null;
	/** Consumers ignore a snapshot older than the one they hold (events may arrive out of order). */
	updatedAt: string;
}

/** The payload of warehouse.warehouse.created / .updated: what other services need of a warehouse. */
export interface WarehouseSnapshot {
	warehouseId: string;
	name: string;
	/** ISO 3166 alpha-2: where its parcels leave from (shipping rates use it as the origin). */
	country: string | null;
	/** An inactive warehouse takes no new reservations (API.md). */
	active: boolean;
	updatedAt: string;
}

export interface OrderEventData {
	orderId: string;
	customerId: string;
	status: string;
	items: { productId: string; sku: string; quantity: number }[];
	total: Money;
	failureReason?: string | null;
	/** The order's version after this change (bumped by every status change): consumers keep the newest. */
	version?: number;
}

export interface PaymentEventData {
	paymentId: string;
	orderId: string;
	amount: Money;
	status: string;
	/** Refunds: this refund's id, cents refunded by it, and whether nothing captured is left. */
	refundId?: string;
	refundAmount?: number;
	fullyRefunded?: boolean;
	/** An operator's refund (POST /admin/payments/:id/refund), which the order records or acts on; a saga's refund is not. */
	operator?: boolean;
}

export interface FulfillmentEventData {
	fulfillmentId: string;
	orderId: string;
	warehouseId: string;
	trackingNumber?: string | null;
	/** True when every live fulfillment of the order has reached this state. */
	orderComplete: boolean;
	/** The fulfillment's status after the change (a delivery implies the shipment). */
	status?: string;
}

export interface EventPayloads {
	"catalog.product.created": ProductSnapshot;
	"catalog.product.updated": ProductSnapshot;
	"catalog.product.archived": { productId: string; sku: string };
	"catalog.category.created": CategorySnapshot;
	"catalog.category.updated": CategorySnapshot;
	/** `updatedAt` is the deletion time: a late .updated of the same category is older and ignored. */
	"catalog.category.deleted": { categoryId: string; slug: string; updatedAt: string };
	/** `totalAvailable`: on hand minus reserved over the SKU's active warehouses (what can still be reserved). */
	"warehouse.stock.changed": { sku: string; warehouseId: string; onHand: number; reserved: number; totalAvailable: number };
	"warehouse.warehouse.created": WarehouseSnapshot;
	"warehouse.warehouse.updated": WarehouseSnapshot;
	"orders.order.created": OrderEventData;
	"orders.order.confirmed": OrderEventData;
	"orders.order.rejected": OrderEventData;
	"orders.order.cancelled": OrderEventData;
	"orders.order.shipped": OrderEventData;
	"orders.order.delivered": OrderEventData;
	"payments.payment.authorized": PaymentEventData;
	"payments.payment.captured": PaymentEventData;
	"payments.payment.voided": PaymentEventData;
	"payments.payment.refunded": PaymentEventData;
	"payments.payment.failed": PaymentEventData;
	"fulfillment.fulfillment.shipped": FulfillmentEventData;
	"fulfillment.fulfillment.delivered": FulfillmentEventData;
	"reviews.review.published": { reviewId: string; productId: string; rating: number; summary: { average: number; count: number } };
	"customers.customer.registered": { customerId: string; email: string };
}

export type EventName = keyof EventPayloads;
export type DomainEvent<N extends EventName> = EventPayloads[N] & EventEnvelope;
