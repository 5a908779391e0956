/**
 * Fulfillment with the real shipping service, on SQLite and PostgreSQL: creation per warehouse,
 * idempotency, every transition (legal and not), concurrent operators, cancellation, and the
 * shipped/delivered events that orders and shipping consume.
 */
import type { ServiceBroker, ServiceSchema } from "moleculer";
import type { Transaction } from "sequelize";
import { resetConfig } from "../../../config";
import type { FulfillmentStatus } from "../../../lib/fulfillment/state";
import { useTestEnv } from "../../support/env";
import { adminToken, fakeAuth, httpClient } from "../cart/fakes";
import { PG_URL, dropDatabases, pgPrefix, waitFor } from "../events/helpers";

jest.setTimeout(90_000);

const ADDRESS = { line1: "1 Main St", city: "Springfield", postalCode: "12345", country: "US" };
const ops = { meta: { user: { id: "adm-ops", typ: "admin", roles: ["ops"] } } };
const TRACKING = /^MC[2-9A-HJ-NP-Z]{12}$/;

/** What a consumer of fulfillment events receives, in the order it applied them. */
const received: any[] = [];

function eventSpy(): ServiceSchema {
	const { DbMixin } = require("../../../mixins/db.mixin");
	const { ConsumerMixin, inboxMigrations } = require("../../../mixins/consumer.mixin");
	const keep = (e: any, t: Transaction) => t.afterCommit(() => void received.push(e));
	return {
		name: "fulfillspy",
		mixins: [DbMixin({ name: "fulfillspy", migrations: [...inboxMigrations], models: () => ({}) }), ConsumerMixin],
		subscriptions: {
			"fulfillment.fulfillment.shipped": (e: any, t: Transaction) => keep({ name: "shipped", ...e }, t),
			"fulfillment.fulfillment.delivered": (e: any, t: Transaction) => keep({ name: "delivered", ...e }, t),
		},
	};
}

describe.each([
	["SQLite", {}],
	["PostgreSQL", { DATABASE_URL: PG_URL, DB_NAME_PREFIX: pgPrefix("ful") }],
])("fulfillment on %s", (_db, env: Record<string, string>) => {
	let broker: ServiceBroker;
	let http: ReturnType<typeof httpClient>;
	let n = 0;

	const create = (orderId: string, allocations: { warehouseId: string; sku: string; quantity: number }[], idempotencyKey = `${orderId}:fulfill`) =>
		broker.call("fulfillment.create", { orderId, allocations, shippingAddress: ADDRESS, shippingMethod: "standard", idempotencyKey }) as Promise<any>;
	const move = (id: string, verb: string) => broker.call(`fulfillment.${verb}`, { id }, ops) as Promise<any>;
	const byOrder = (orderId: string) => broker.call("fulfillment.byOrder", { orderId }) as Promise<any[]>;
	/** A new order with one fulfillment in wh-east, moved on by `verbs`. */
	async function oneAt(...verbs: string[]) {
		const orderId = `order-${++n}`;
		const { fulfillments } = await create(orderId, [{ warehouseId: "wh-east", sku: "SKU-A", quantity: 1 }]);
		for (const verb of verbs) await move(fulfillments[0].id, verb);
		return { orderId, id: fulfillments[0].id as string };
	}
	const eventsOf = (orderId: string) => received.filter(e => e.orderId === orderId);

	beforeAll(async () => {
		received.length = 0;
		useTestEnv({ ...env, EVENTS_POLL_MS: "100" });
		const { createBroker } = require("../../../lib/broker") as typeof import("../../../lib/broker");
		broker = createBroker(["api", "fulfillment", "shipping"], { logger: false, namespace: `ful-${Math.random().toString(36).slice(2)}` });
		broker.createService(fakeAuth);
		broker.createService(eventSpy());
		await broker.start();
		http = httpClient(broker);
	});

	afterAll(async () => {
		await broker?.stop();
		if (env.DATABASE_URL) await dropDatabases(env.DB_NAME_PREFIX);
	});

	describe("creation", () => {
		it("makes one PENDING fulfillment per warehouse holding the order's stock", async () => {
			const res = await create("order-split", [
				{ warehouseId: "wh-west", sku: "SKU-A", quantity: 2 },
				{ warehouseId: "wh-east", sku: "SKU-A", quantity: 1 },
				{ warehouseId: "wh-west", sku: "SKU-B", quantity: 1 },
			]);
			expect(res).toEqual({
				fulfillments: [
					{ id: expect.stringMatching(/^[0-9a-f-]{36}$/), warehouseId: "wh-west", status: "PENDING" },
					{ id: expect.stringMatching(/^[0-9a-f-]{36}$/), warehouseId: "wh-east", status: "PENDING" },
				],
			});
			const [west, east] = res.fulfillments;
			expect(await byOrder("order-split")).toEqual([
				{ id: east.id, warehouseId: "wh-east", status: "PENDING", trackingNumber: null },
				{ id: west.id, warehouseId: "wh-west", status: "PENDING", trackingNumber: null },
			]);
			const listed: any = await broker.call("fulfillment.list", { orderId: "order-split" }, ops);
			expect(listed).toEqual({
				items: expect.arrayContaining([
					{ id: west.id, orderId: "order-split", warehouseId: "wh-west", status: "PENDING", trackingNumber: null, items: [{ sku: "SKU-A", quantity: 2 }, { sku: "SKU-B", quantity: 1 }], shippingMethod: "standard", shippingAddress: ADDRESS, createdAt: expect.any(String), updatedAt: expect.any(String) },
					{ id: east.id, orderId: "order-split", warehouseId: "wh-east", status: "PENDING", trackingNumber: null, items: [{ sku: "SKU-A", quantity: 1 }], shippingMethod: "standard", shippingAddress: ADDRESS, createdAt: expect.any(String), updatedAt: expect.any(String) },
				]),
				total: 2,
				page: 1,
				pageSize: 20,
			});
		});

		it("answers a repeated create with the first answer and creates nothing more, even 10 at once", async () => {
			const allocations = [{ warehouseId: "wh-east", sku: "SKU-A", quantity: 1 }, { warehouseId: "wh-west", sku: "SKU-B", quantity: 2 }];
			const answers = await Promise.all(Array.from({ length: 10 }, () => create("order-idem", allocations, "saga-1:fulfill")));
			for (const a of answers) expect(a).toEqual(answers[0]);
			expect(answers[0].fulfillments).toHaveLength(2);
			expect(await create("order-idem", allocations, "saga-1:fulfill")).toEqual(answers[0]);
			expect((await byOrder("order-idem")).map(f => f.id).sort()).toEqual(answers[0].fulfillments.map((f: any) => f.id).sort());

			await expect(create("order-idem", [{ warehouseId: "wh-east", sku: "SKU-A", quantity: 9 }], "saga-1:fulfill")).rejects.toMatchObject({ code: 422, type: "IDEMPOTENCY_KEY_REUSED" });
			await expect(create("order-other", allocations, "saga-1:fulfill")).rejects.toMatchObject({ code: 422, type: "IDEMPOTENCY_KEY_REUSED" });
			await expect(create("order-idem", allocations, "saga-2:fulfill")).rejects.toMatchObject({ code: 409, type: "FULFILLMENT_FAILED" });
			expect(await byOrder("order-other")).toEqual([]);
			expect(await byOrder("order-idem")).toHaveLength(2);
		});

		it("refuses bad requests with 422 and leaves nothing behind", async () => {
			for (const allocations of [[], [{ warehouseId: "wh-east", sku: "SKU-A", quantity: 0 }], [{ warehouseId: "wh-east", sku: "SKU-A", quantity: 1.5 }], [{ warehouseId: "", sku: "SKU-A", quantity: 1 }]]) {
				await expect(create("order-bad", allocations as any)).rejects.toMatchObject({ code: 422 });
			}
			await expect(broker.call("fulfillment.create", { orderId: "order-bad", allocations: [{ warehouseId: "wh-east", sku: "SKU-A", quantity: 1 }], shippingAddress: ADDRESS, shippingMethod: "standard" })).rejects.toMatchObject({ code: 422 });
			expect(await byOrder("order-bad")).toEqual([]);
		});

		it("leaves nothing when it fails midway, and the same key then succeeds", async () => {
			process.env.TEST_FAULTS = "fail:fulfillment.create";
			resetConfig();
			try {
				await expect(create("order-fault", [{ warehouseId: "wh-east", sku: "SKU-A", quantity: 1 }, { warehouseId: "wh-west", sku: "SKU-A", quantity: 1 }])).rejects.toThrow("Injected fault at fulfillment.create");
			} finally {
				process.env.TEST_FAULTS = "";
				resetConfig();
			}
			expect(await byOrder("order-fault")).toEqual([]);
			expect((await create("order-fault", [{ warehouseId: "wh-east", sku: "SKU-A", quantity: 1 }, { warehouseId: "wh-west", sku: "SKU-A", quantity: 1 }])).fulfillments).toHaveLength(2);
		});
	});

	describe("transitions", () => {
		const LEGAL: Record<string, FulfillmentStatus> = { "PENDING pick": "PICKED", "PICKED pack": "PACKED", "PACKED ship": "SHIPPED", "SHIPPED deliver": "DELIVERED" };
		const reach: Record<FulfillmentStatus, string[]> = {
			PENDING: [],
			PICKED: ["pick"],
			PACKED: ["pick", "pack"],
			SHIPPED: ["pick", "pack", "ship"],
			DELIVERED: ["pick", "pack", "ship", "deliver"],
			CANCELLED: [],
		};
		const cases = (Object.keys(reach) as FulfillmentStatus[]).flatMap(from => ["pick", "pack", "ship", "deliver"].map(verb => [from, verb] as const));

		it.each(cases)("from %s, %s is allowed exactly when the state machine says so", async (from, verb) => {
			const { orderId, id } = await oneAt(...reach[from]);
			if (from === "CANCELLED") await broker.call("fulfillment.cancel", { orderId, idempotencyKey: `${orderId}:cancel` });
			const to = LEGAL[`${from} ${verb}`];
			if (to) {
				const moved = await move(id, verb);
				expect(moved).toMatchObject({ id, orderId, warehouseId: "wh-east", status: to, items: [{ sku: "SKU-A", quantity: 1 }] });
				expect(moved.trackingNumber === null).toBe(!["SHIPPED", "DELIVERED"].includes(to));
			} else {
				await expect(move(id, verb)).rejects.toMatchObject({ code: 409, type: "ILLEGAL_TRANSITION", data: { from, verb } });
				expect((await byOrder(orderId))[0].status).toBe(from);
			}
		});

		it("answers 404 for an unknown fulfillment", async () => {
			await expect(move("no-such-fulfillment", "pick")).rejects.toMatchObject({ code: 404, type: "FULFILLMENT_NOT_FOUND" });
		});

		it("lets exactly one of ten concurrent picks win", async () => {
			const { orderId, id } = await oneAt();
			const results = await Promise.allSettled(Array.from({ length: 10 }, () => move(id, "pick")));
			expect(results.filter(r => r.status === "fulfilled")).toHaveLength(1);
			expect((results.filter(r => r.status === "rejected") as PromiseRejectedResult[]).map(r => [r.reason.code, r.reason.type])).toEqual(Array(9).fill([409, "ILLEGAL_TRANSITION"]));
			expect((await byOrder(orderId))[0].status).toBe("PICKED");
		});

		it("ships once under concurrent ship requests: one shipment, one tracking number, one event", async () => {
			const { orderId, id } = await oneAt("pick", "pack");
			const results = await Promise.allSettled(Array.from({ length: 5 }, () => move(id, "ship")));
			const won = results.filter(r => r.status === "fulfilled") as PromiseFulfilledResult<any>[];
			expect(won).toHaveLength(1);
			expect(won[0].value.trackingNumber).toMatch(TRACKING);
			expect(await byOrder(orderId)).toEqual([{ id, warehouseId: "wh-east", status: "SHIPPED", trackingNumber: won[0].value.trackingNumber }]);
			await waitFor(() => eventsOf(orderId).length === 1);
			expect(eventsOf(orderId)).toEqual([{ name: "shipped", eventId: expect.any(String), occurredAt: expect.any(String), fulfillmentId: id, orderId, warehouseId: "wh-east", trackingNumber: won[0].value.trackingNumber, orderComplete: true, status: "SHIPPED" }]);
		});

		it("runs through the gateway for ops admins, with the API's error shape", async () => {
			const { id } = await oneAt();
			const opsToken = adminToken("adm-ops", ["ops"]);
			expect((await http("POST", `/api/v1/admin/fulfillments/${id}/pick`, { token: adminToken("adm-sup", ["support"]) })).status).toBe(403);
			expect(await http("POST", `/api/v1/admin/fulfillments/${id}/pick`, { token: opsToken })).toMatchObject({ status: 200, body: { id, status: "PICKED" } });
			expect(await http("POST", `/api/v1/admin/fulfillments/${id}/pick`, { token: opsToken })).toEqual({
				status: 409,
				body: { name: "ConflictError", message: "Cannot pick a fulfillment that is PICKED", code: 409, type: "ILLEGAL_TRANSITION", data: { from: "PICKED", verb: "pick" } },
			});
			expect((await http("POST", `/api/v1/admin/fulfillments/${id}/pick`, { token: opsToken, body: { status: "DELIVERED" } })).status).toBe(422);
			const page = await http("GET", "/api/v1/admin/fulfillments?status=PICKED&page=1&pageSize=1000", { token: opsToken });
			expect(page.status).toBe(200);
			expect(page.body).toMatchObject({ page: 1, pageSize: 100 });
			expect(page.body.items.every((f: any) => f.status === "PICKED")).toBe(true);
			expect(page.body.items.map((f: any) => f.id)).toContain(id);
			expect((await http("GET", "/api/v1/admin/fulfillments?status=LOST", { token: opsToken })).status).toBe(422);
			expect((await http("GET", "/api/v1/admin/fulfillments?page=0", { token: opsToken })).status).toBe(422);
		});
	});

	describe("shipping and delivering an order in two parcels", () => {
		it("reports each parcel, says when the whole order has shipped and been delivered, and tracks the parcels", async () => {
			const { fulfillments } = await create("order-two", [{ warehouseId: "wh-east", sku: "SKU-A", quantity: 1 }, { warehouseId: "wh-west", sku: "SKU-B", quantity: 1 }]);
			const [east, west] = fulfillments.map((f: any) => f.id);
			for (const id of [east, west]) for (const verb of ["pick", "pack"]) await move(id, verb);

			const eastShipped = await move(east, "ship");
			await waitFor(() => eventsOf("order-two").length === 1);
			const westShipped = await move(west, "ship");
			expect(eastShipped.trackingNumber).not.toBe(westShipped.trackingNumber);
			await waitFor(() => eventsOf("order-two").length === 2);
			// Both parcels delivered at the same moment: whichever is last sees the other one delivered.
			await Promise.all([move(east, "deliver"), move(west, "deliver")]);
			await waitFor(() => eventsOf("order-two").length === 4);

			const common = { eventId: expect.any(String), occurredAt: expect.any(String), orderId: "order-two" };
			const events = eventsOf("order-two");
			expect(events.slice(0, 2)).toEqual([
				{ ...common, name: "shipped", fulfillmentId: east, warehouseId: "wh-east", trackingNumber: eastShipped.trackingNumber, orderComplete: false, status: "SHIPPED" },
				{ ...common, name: "shipped", fulfillmentId: west, warehouseId: "wh-west", trackingNumber: westShipped.trackingNumber, orderComplete: true, status: "SHIPPED" },
			]);
			const delivered = events.slice(2).sort((a, b) => Number(a.orderComplete) - Number(b.orderComplete));
			expect(delivered).toEqual([
				expect.objectContaining({ ...common, name: "delivered", orderComplete: false }),
				expect.objectContaining({ ...common, name: "delivered", orderComplete: true }),
			]);
			expect(delivered.map(e => e.fulfillmentId).sort()).toEqual([east, west].sort());

			for (const f of [eastShipped, westShipped]) {
				await waitFor(async () => ((await broker.call("shipping.track", { trackingNumber: f.trackingNumber })) as any).status === "DELIVERED");
				const tracked: any = await broker.call("shipping.track", { trackingNumber: f.trackingNumber });
				expect(tracked).toEqual({ trackingNumber: f.trackingNumber, status: "DELIVERED", events: [{ status: "IN_TRANSIT", at: expect.any(String) }, { status: "DELIVERED", at: expect.any(String) }] });
				expect(Date.parse(tracked.events[1].at)).toBeGreaterThanOrEqual(Date.parse(tracked.events[0].at));
				expect(await http("GET", `/api/v1/shipments/${f.trackingNumber.toLowerCase()}`)).toEqual({ status: 200, body: tracked });
			}
			expect(await byOrder("order-two")).toEqual(
				[
					{ id: east, warehouseId: "wh-east", status: "DELIVERED", trackingNumber: eastShipped.trackingNumber },
					{ id: west, warehouseId: "wh-west", status: "DELIVERED", trackingNumber: westShipped.trackingNumber },
				],
			);
		});
	});

	describe("cancellation", () => {
		it("cancels every fulfillment not yet shipped, once, whatever its step", async () => {
			const created = await create("order-cancel", [
				{ warehouseId: "wh-a", sku: "SKU-A", quantity: 1 },
				{ warehouseId: "wh-b", sku: "SKU-A", quantity: 1 },
				{ warehouseId: "wh-c", sku: "SKU-A", quantity: 1 },
			]);
			const { fulfillments } = created;
			const [a, b, c] = fulfillments.map((f: any) => f.id);
			await move(b, "pick");
			for (const verb of ["pick", "pack"]) await move(c, verb);
			const cancelled = { fulfillments: [{ id: a, warehouseId: "wh-a", status: "CANCELLED" }, { id: b, warehouseId: "wh-b", status: "CANCELLED" }, { id: c, warehouseId: "wh-c", status: "CANCELLED" }] };
			expect(await broker.call("fulfillment.cancel", { orderId: "order-cancel", idempotencyKey: "k-cancel" })).toEqual(cancelled);
			expect(await broker.call("fulfillment.cancel", { orderId: "order-cancel", idempotencyKey: "k-cancel" })).toEqual(cancelled);
			await expect(move(c, "ship")).rejects.toMatchObject({ code: 409, type: "ILLEGAL_TRANSITION" });
			// The saga's create, repeated with its own key after the cancel, answers as the first time and changes nothing.
			expect(await create("order-cancel", [{ warehouseId: "wh-a", sku: "SKU-A", quantity: 1 }, { warehouseId: "wh-b", sku: "SKU-A", quantity: 1 }, { warehouseId: "wh-c", sku: "SKU-A", quantity: 1 }])).toEqual(created);
			expect((await byOrder("order-cancel")).map(f => f.status)).toEqual(["CANCELLED", "CANCELLED", "CANCELLED"]);
		});

		it("refuses to cancel, and changes nothing, once one parcel has shipped", async () => {
			const { fulfillments } = await create("order-gone", [{ warehouseId: "wh-a", sku: "SKU-A", quantity: 1 }, { warehouseId: "wh-b", sku: "SKU-A", quantity: 1 }]);
			const [a, b] = fulfillments.map((f: any) => f.id);
			for (const verb of ["pick", "pack", "ship"]) await move(a, verb);
			await move(b, "pick");
			const before = await byOrder("order-gone");
			await expect(broker.call("fulfillment.cancel", { orderId: "order-gone", idempotencyKey: "k-gone" })).rejects.toMatchObject({
				code: 409,
				type: "NOT_CANCELLABLE",
				data: { fulfillments: [{ id: a, warehouseId: "wh-a", status: "SHIPPED" }] },
			});
			expect(await byOrder("order-gone")).toEqual(before);
			expect((await move(b, "pack")).status).toBe("PACKED");
		});

		it("keeps a cancelled order cancelled when its create arrives late (a compensation that overtook its step)", async () => {
			expect(await broker.call("fulfillment.cancel", { orderId: "order-late", idempotencyKey: "k-late" })).toEqual({ fulfillments: [] });
			await expect(create("order-late", [{ warehouseId: "wh-a", sku: "SKU-A", quantity: 1 }])).rejects.toMatchObject({ code: 409, type: "FULFILLMENT_FAILED" });
			expect(await byOrder("order-late")).toEqual([]);
		});

		it("refuses the saga's create arriving after the compensation that fenced its key, whatever the order's state", async () => {
			expect(await broker.call("fulfillment.cancel", { orderId: "order-fenced", idempotencyKey: "k-fenced", stepKey: "saga-f:fulfill" })).toEqual({ fulfillments: [] });
			await expect(create("order-fenced", [{ warehouseId: "wh-a", sku: "SKU-A", quantity: 1 }], "saga-f:fulfill")).rejects.toMatchObject({ code: 409, type: "STEP_COMPENSATED" });
			expect(await byOrder("order-fenced")).toEqual([]);
		});

		it("lets a cancel and a pick race without losing either's rule: the pick loses or the cancel still catches it", async () => {
			for (let i = 0; i < 5; i++) {
				const { orderId, id } = await oneAt();
				const [pick] = await Promise.allSettled([move(id, "pick"), broker.call("fulfillment.cancel", { orderId, idempotencyKey: `${orderId}:cancel` })]);
				expect(await byOrder(orderId)).toEqual([{ id, warehouseId: "wh-east", status: "CANCELLED", trackingNumber: null }]);
				if (pick.status === "rejected") expect(pick.reason).toMatchObject({ code: 409, type: "ILLEGAL_TRANSITION" });
			}
		});
	});
});
