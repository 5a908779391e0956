/**
 * A burst of 1,000 events while this file's own NATS server (JetStream, file store) is stopped
 * and started again: every event is applied once — nothing lost, nothing applied twice.
 */
import { useTestEnv } from "../../support/env";

useTestEnv({
	NAMESPACE: `ev-restart-${process.pid}`,
	EVENTS_MAX_ATTEMPTS: "1000",
	EVENTS_RETRY_BASE_MS: "100",
	EVENTS_RETRY_MAX_MS: "1000",
	EVENTS_POLL_MS: "200",
	EVENTS_ACK_WAIT_MS: "2000",
});

import { ServiceBroker } from "moleculer";
import { resetConfig } from "../../../config";
import { brokerOptions } from "../../../moleculer.config";
import { PrivateNats, consumerService, producerService, tallies, waitFor } from "./helpers";

jest.setTimeout(60_000);

describe("events across a NATS restart", () => {
	const nats = new PrivateNats();
	let shop: ServiceBroker;
	let ledger: ServiceBroker;

	beforeAll(async () => {
		await nats.start();
		process.env.TRANSPORTER = nats.url;
		resetConfig();
		shop = new ServiceBroker(brokerOptions({ logger: false, nodeID: `shop-${process.pid}` }));
		ledger = new ServiceBroker(brokerOptions({ logger: false, nodeID: `ledger-${process.pid}` }));
		shop.createService(producerService());
		ledger.createService(consumerService());
		await Promise.all([shop.start(), ledger.start()]);
	});

	afterAll(async () => {
		await Promise.all([shop?.stop(), ledger?.stop()]);
		await nats.destroy();
	});

	it("applies each of 1,000 events exactly once although NATS stopped and restarted in the middle of the burst", async () => {
		const count = 1000;
		const burst = shop.call("evshop.placeMany", { prefix: "b-", count }, { timeout: 55_000 });
		const shopSvc: any = shop.getLocalService("evshop");
		// Stop NATS once a fifth of the burst is committed (some published, some applied, some in flight).
		await waitFor(async () => ((await shopSvc.sequelize.query("SELECT COUNT(*) AS n FROM orders", { plain: true })) as any).n >= count / 5, 30_000, 20);
		await nats.stop();
		const committedWhileDown = await waitFor(async () => {
			const n = Number(((await shopSvc.sequelize.query("SELECT COUNT(*) AS n FROM orders", { plain: true })) as any).n);
			return n >= (2 * count) / 5 ? n : 0;
		}, 30_000, 20);
		const pendingWhileDown = (await shopSvc.$outbox.counts()).PENDING;
		await nats.start();
		expect(await burst).toBe(count);
		expect(committedWhileDown).toBeGreaterThan(count / 5);
		expect(pendingWhileDown).toBeGreaterThan(0);

		const ids = Array.from({ length: count }, (_, i) => `b-${i}`);
		await waitFor(async () => {
			const t = await tallies(ledger);
			return ids.every(id => t[id] !== undefined);
		}, 45_000, 250);
		// Let redeliveries of messages whose acknowledgement was lost in the outage come and go.
		await waitFor(async () => {
			const s: any = await ledger.call("$events.status");
			return s.consumers.every((c: any) => c.pending === 0 && c.inFlight === 0);
		}, 20_000, 250);
		const t = await tallies(ledger);
		expect(ids.filter(id => t[id] !== 1)).toEqual([]);
		expect(Object.keys(t)).toHaveLength(count);
		expect((await shopSvc.$outbox.counts()).PENDING).toBe(0);
		expect(((await ledger.call("$events.deadLetters", {})) as any).items).toEqual([]);
	});
});
