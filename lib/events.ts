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

export interface OrderEventData {
	orderId: string;
	customerId: string;
	status: string;
	items: { productId: string; sku: string; quantity: number }[];
	total: Money;
	failureReason?: string | null;
}

export interface PaymentEventData {
	paymentId: string;
	orderId: string;
	amount: Money;
	status: string;
}

export interface FulfillmentEventData {
	fulfillmentId: string;
	orderId: string;
	warehouseId: string;
	trackingNumber?: string | null;
	/** True when every live fulfillment of the order has reached this state. */
	orderComplete: boolean;
}

export interface EventPayloads {
	"catalog.product.created": ProductSnapshot;
	"catalog.product.updated": ProductSnapshot;
	"catalog.product.archived": { productId: string; sku: string };
	"warehouse.stock.changed": { sku: string; warehouseId: string; onHand: number; reserved: number; totalAvailable: number };
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
