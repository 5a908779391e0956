/**
 * Shipping on SQLite and PostgreSQL: rates through the gateway (free-shipping threshold from the
 * configuration, zones, the cart when no items are given, bad input), the internal quote, and
 * shipments: idempotent creation and public tracking.
 */
import type { ServiceBroker } from "moleculer";
import { resetConfig } from "../../../config";
import { useTestEnv } from "../../support/env";
import { type FakeProduct, adminToken, customerToken, fakeAuth, fakeCatalog, httpClient, product } from "../cart/fakes";
import { PG_URL, dropDatabases, pgPrefix } from "../events/helpers";

jest.setTimeout(60_000);

const usd = (amount: number) => ({ amount, currency: "USD" });
const US = { line1: "1 Main St", city: "Springfield", postalCode: "12345", country: "US" };
const DE = { line1: "Hauptstr. 1", city: "Berlin", postalCode: "10115", country: "DE" };
const TRACKING = /^MC[2-9A-HJ-NP-Z]{12}$/;
const THRESHOLD = 10_000;

describe.each([
	["SQLite", {}],
	["PostgreSQL", { DATABASE_URL: PG_URL, DB_NAME_PREFIX: pgPrefix("ship") }],
])("shipping on %s", (_db, env: Record<string, string>) => {
	let broker: ServiceBroker;
	let http: ReturnType<typeof httpClient>;
	const products = new Map<string, FakeProduct>();
	// 1.2 kg at $40 and 300 g at $25: two of the first are over the $100 threshold.
	const kettle = product("kettle", 4000, 1200);
	const cup = product("cup", 2500, 300);
	const gone = product("gone", 1000, 100, "archived");
	for (const p of [kettle, cup, gone]) products.set(p.id, p);
	const customer = { id: "cust-ship", token: "" };
	const rates = (body: unknown, token = customer.token) => http("POST", "/api/v1/shipping/rates", { token, body });

	beforeAll(async () => {
		useTestEnv({ ...env, FREE_SHIPPING_THRESHOLD_CENTS: String(THRESHOLD) });
		const { createBroker } = require("../../../lib/broker") as typeof import("../../../lib/broker");
		broker = createBroker(["api", "shipping", "cart"], { logger: false, namespace: `ship-${Math.random().toString(36).slice(2)}` });
		broker.createService(fakeCatalog(products));
		broker.createService(fakeAuth);
		await broker.start();
		http = httpClient(broker);
		customer.token = customerToken(customer.id);
	});

	afterAll(async () => {
		await broker?.stop();
		if (env.DATABASE_URL) await dropDatabases(env.DB_NAME_PREFIX);
	});

	describe("rates", () => {
		it("prices standard and express by weight within the US, standard free from the configured subtotal on", async () => {
			// 1.5 kg, $65: under the threshold, one extra kilogram.
			expect(await rates({ address: US, items: [{ productId: kettle.id, quantity: 1 }, { productId: cup.id, quantity: 1 }] })).toEqual({
				status: 200,
				body: { items: [{ method: "standard", price: usd(499 + 100), estimatedDays: 5 }, { method: "express", price: usd(1299 + 200), estimatedDays: 2 }] },
			});
			// 2.4 kg, $80: still under.
			expect((await rates({ address: US, items: [{ productId: kettle.id, quantity: 2 }] })).body.items[0].price).toEqual(usd(499 + 2 * 100));
			// 3.9 kg, $205: standard is free, express is not.
			expect((await rates({ address: US, items: [{ productId: kettle.id, quantity: 2 }, { productId: cup.id, quantity: 5 }] })).body).toEqual({
				items: [{ method: "standard", price: usd(0), estimatedDays: 5 }, { method: "express", price: usd(1299 + 3 * 200), estimatedDays: 2 }],
			});
			// Exactly at the threshold counts: 4 cups are $100.
			expect((await rates({ address: US, items: [{ productId: cup.id, quantity: 4 }] })).body.items[0].price).toEqual(usd(0));
		});

		it("charges international parcels by zone, never free", async () => {
			expect((await rates({ address: DE, items: [{ productId: kettle.id, quantity: 3 }, { productId: cup.id, quantity: 4 }] })).body).toEqual({
				items: [{ method: "standard", price: usd(1999 + 4 * 400), estimatedDays: 10 }, { method: "express", price: usd(3999 + 4 * 800), estimatedDays: 4 }],
			});
			expect((await rates({ address: { ...US, country: "JP" }, items: [{ productId: cup.id, quantity: 1 }] })).body.items).toEqual([
				{ method: "standard", price: usd(2499), estimatedDays: 14 },
				{ method: "express", price: usd(4999), estimatedDays: 6 },
			]);
		});

		it("quotes the caller's cart when no items are given, and nobody else's", async () => {
			const as = (id: string) => ({ meta: { user: { id, typ: "customer", roles: [] } } });
			expect(await rates({ address: US })).toMatchObject({ status: 422, body: { type: "EMPTY_CART" } });
			await broker.call("cart.addItem", { productId: kettle.id, quantity: 3 }, as(customer.id));
			await broker.call("cart.addItem", { productId: cup.id, quantity: 2 }, as("cust-other"));
			// 3.6 kg, $120.
			expect(await rates({ address: US })).toEqual({ status: 200, body: { items: [{ method: "standard", price: usd(0), estimatedDays: 5 }, { method: "express", price: usd(1299 + 3 * 200), estimatedDays: 2 }] } });
			expect((await rates({ address: US }, customerToken("cust-other"))).body.items[0].price).toEqual(usd(499));
		});

		it("answers 404 for a product that does not exist or is no longer sold", async () => {
			for (const productId of ["no-such-product", gone.id]) {
				expect(await rates({ address: US, items: [{ productId: cup.id, quantity: 1 }, { productId, quantity: 1 }] })).toEqual({
					status: 404,
					body: { name: "NotFoundError", message: `Product ${productId} not found`, code: 404, type: "PRODUCT_NOT_FOUND" },
				});
			}
		});

		it("refuses bad addresses, items and fields with 422, and non-customers", async () => {
			const item = [{ productId: cup.id, quantity: 1 }];
			for (const body of [
				{ items: item },
				{ address: { ...US, country: "USA" }, items: item },
				{ address: { ...US, country: "us" }, items: item },
				{ address: { ...US, line1: "" }, items: item },
				{ address: { city: "Springfield", postalCode: "12345", country: "US" }, items: item },
				{ address: { ...US, isDefault: true }, items: item },
				{ address: US, items: [] },
				{ address: US, items: [{ productId: cup.id, quantity: 0 }] },
				{ address: US, items: [{ productId: cup.id, quantity: 100 }] },
				{ address: US, items: [{ productId: cup.id, quantity: "x" }] },
				{ address: US, items: [{ productId: cup.id, quantity: 1, weightGrams: 1 }] },
				{ address: US, items: item, subtotal: 1 },
			]) {
				const res = await rates(body);
				expect({ body, status: res.status, type: res.body.type }).toEqual({ body, status: 422, type: "VALIDATION_ERROR" });
			}
			expect((await http("POST", "/api/v1/shipping/rates", { body: { address: US, items: item } })).status).toBe(401);
			expect((await rates({ address: US, items: item }, adminToken("adm", ["superadmin"]))).status).toBe(403);
		});

		it("quotes for other services from lines they priced, with any stored address", async () => {
			const stored = { id: "addr-1", ...US, line2: null, isDefault: true };
			expect(await broker.call("shipping.quote", { address: stored, lines: [{ productId: "p", quantity: 2, weightGrams: 1600 }], subtotal: usd(9999) })).toEqual({
				items: [{ method: "standard", price: usd(499 + 3 * 100), estimatedDays: 5 }, { method: "express", price: usd(1299 + 3 * 200), estimatedDays: 2 }],
			});
			expect(((await broker.call("shipping.quote", { address: stored, lines: [], subtotal: usd(THRESHOLD) })) as any).items[0].price).toEqual(usd(0));
			await expect(broker.call("shipping.quote", { address: { ...US, country: "XYZ" }, lines: [], subtotal: usd(0) })).rejects.toMatchObject({ code: 422 });
			await expect(broker.call("shipping.quote", { address: US, lines: [], subtotal: usd(-1) })).rejects.toMatchObject({ code: 422 });
		});
	});

	describe("shipments", () => {
		const shipment = (fulfillmentId: string, idempotencyKey = `ship:${fulfillmentId}`, method = "standard") =>
			broker.call("shipping.createShipment", { fulfillmentId, orderId: "order-1", method, address: US, idempotencyKey }) as Promise<any>;

		it("creates one shipment per key with a readable tracking number that anyone can follow", async () => {
			const answers = await Promise.all(Array.from({ length: 5 }, () => shipment("ful-1")));
			expect(answers[0]).toEqual({ trackingNumber: expect.stringMatching(TRACKING) });
			for (const a of answers) expect(a).toEqual(answers[0]);
			expect(await shipment("ful-1")).toEqual(answers[0]);
			const other = await shipment("ful-2");
			expect(other.trackingNumber).not.toBe(answers[0].trackingNumber);

			const tracked = await http("GET", `/api/v1/shipments/${answers[0].trackingNumber}`);
			expect(tracked).toEqual({ status: 200, body: { trackingNumber: answers[0].trackingNumber, status: "IN_TRANSIT", events: [{ status: "IN_TRANSIT", at: expect.any(String) }] } });
			expect(Number.isNaN(Date.parse(tracked.body.events[0].at))).toBe(false);
		});

		it("refuses a key reused for another request, and a second shipment for a fulfillment", async () => {
			await shipment("ful-3");
			await expect(shipment("ful-3", "ship:ful-3", "express")).rejects.toMatchObject({ code: 422, type: "IDEMPOTENCY_KEY_REUSED" });
			await expect(shipment("ful-4", "ship:ful-3")).rejects.toMatchObject({ code: 422, type: "IDEMPOTENCY_KEY_REUSED" });
			await expect(shipment("ful-3", "another-key")).rejects.toMatchObject({ code: 409, type: "SHIPMENT_EXISTS" });
			await expect(broker.call("shipping.createShipment", { fulfillmentId: "ful-5", orderId: "order-1", method: "standard", idempotencyKey: "k" })).rejects.toMatchObject({ code: 422 });
		});

		it("leaves no shipment behind when creating one fails midway", async () => {
			process.env.TEST_FAULTS = "fail:shipping.createShipment";
			resetConfig();
			try {
				await expect(shipment("ful-fault")).rejects.toThrow("Injected fault at shipping.createShipment");
			} finally {
				process.env.TEST_FAULTS = "";
				resetConfig();
			}
			// Had the first attempt left a shipment, another key for this fulfillment would be refused.
			expect(await shipment("ful-fault", "ship:ful-fault:again")).toEqual({ trackingNumber: expect.stringMatching(TRACKING) });
		});

		it("answers 404 for a tracking number it does not know, in any case", async () => {
			const { trackingNumber } = await shipment("ful-6");
			expect((await http("GET", `/api/v1/shipments/${trackingNumber.toLowerCase()}`)).body.trackingNumber).toBe(trackingNumber);
			for (const unknown of ["MC222222222222", "nonsense", "x".repeat(40)]) {
				expect(await http("GET", `/api/v1/shipments/${unknown}`)).toEqual({ status: 404, body: { name: "NotFoundError", message: "Shipment not found", code: 404, type: "SHIPMENT_NOT_FOUND" } });
			}
			expect((await http("GET", `/api/v1/shipments/${"x".repeat(41)}`)).status).toBe(422);
		});
	});
});
