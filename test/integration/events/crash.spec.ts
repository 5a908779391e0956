/**
 * A process that dies between the commit of a state change and the publication of its event
 * (SIGKILL at the fault point `outbox.afterCommit`) leaves the event in its outbox; the next
 * start publishes it and every consumer applies it once — in process and over JetStream.
 */
import { useTestEnv } from "../../support/env";

const NATS_URL = "nats://127.0.0.1:4222";
const NAMESPACE = `ev-crash-${process.pid}-${Date.now().toString(36)}`;
useTestEnv({ NAMESPACE, EVENTS_RETRY_BASE_MS: "100", EVENTS_POLL_MS: "200" });

import { spawn } from "node:child_process";
import { join } from "node:path";
import { ServiceBroker } from "moleculer";
import { resetConfig } from "../../../config";
import { openDatabase } from "../../../mixins/db.mixin";
import { brokerOptions } from "../../../moleculer.config";
import { consumerService, deleteStreams, producerService, tallies, waitFor } from "./helpers";

jest.setTimeout(60_000);

const ROOT = join(__dirname, "..", "..", "..");

/** Runs crash-producer.ts in a child process; resolves with the signal that ended it. */
function crashingProducer(env: Record<string, string>): Promise<NodeJS.Signals | null> {
	return new Promise((resolve, reject) => {
		const child = spawn(process.execPath, ["--import", "tsx", join(__dirname, "crash-producer.ts")], {
			cwd: ROOT,
			env: { ...process.env, TEST_FAULTS: "kill:outbox.afterCommit", ...env },
			stdio: ["ignore", "ignore", "pipe"],
		});
		let stderr = "";
		child.stderr.on("data", d => (stderr += d));
		child.on("error", reject);
		child.on("exit", (code, signal) => (signal ? resolve(signal) : reject(new Error(`producer exited with ${code}: ${stderr}`))));
	});
}

async function outboxRows(): Promise<{ name: string; status: string; payload: unknown }[]> {
	const db = await openDatabase("evshop");
	try {
		return (await db.query("SELECT name, status, payload FROM outbox_events", { type: "SELECT" })) as any;
	} finally {
		await db.close();
	}
}

describe("a crash between commit and publish", () => {
	afterAll(() => deleteStreams(NATS_URL, NAMESPACE));

	it("in process: the event is delivered when the node starts again", async () => {
		delete process.env.TRANSPORTER;
		resetConfig();
		expect(await crashingProducer({ WITH_CONSUMER: "1", ORDER_ID: "crash-emb" })).toBe("SIGKILL");
		expect((await outboxRows()).map(r => [r.name, r.status])).toEqual([["orders.order.confirmed", "PENDING"]]);

		const broker = new ServiceBroker(brokerOptions({ logger: false, nodeID: "restarted" }));
		broker.createService(producerService());
		broker.createService(consumerService());
		await broker.start();
		try {
			await waitFor(async () => (await tallies(broker))["crash-emb"] === 1);
			await waitFor(async () => ((await broker.call("$events.status")) as any).outboxes.evshop.PENDING === 0);
		} finally {
			await broker.stop();
		}
	});

	it("over JetStream: the restarted producer publishes what the dead one committed", async () => {
		process.env.TRANSPORTER = NATS_URL;
		process.env.DATA_DIR = `${process.env.DATA_DIR}-js`;
		resetConfig();
		const ledger = new ServiceBroker(brokerOptions({ logger: false, nodeID: `ledger-${process.pid}` }));
		ledger.createService(consumerService());
		await ledger.start();
		try {
			expect(await crashingProducer({ ORDER_ID: "crash-js" })).toBe("SIGKILL");
			// Only the relay publishes, and the row is still PENDING: the event never reached the bus.
			expect((await outboxRows()).map(r => [r.name, r.status])).toEqual([["orders.order.confirmed", "PENDING"]]);
			expect((await tallies(ledger))["crash-js"]).toBeUndefined();

			const shop = new ServiceBroker(brokerOptions({ logger: false, nodeID: `shop-${process.pid}` }));
			shop.createService(producerService());
			await shop.start();
			try {
				await waitFor(async () => (await tallies(ledger))["crash-js"] === 1);
				// The relay marks what it published a moment later, several rows in one statement.
				await waitFor(async () => (await outboxRows()).every(r => r.status === "PUBLISHED"));
				expect((await outboxRows()).map(r => r.status)).toEqual(["PUBLISHED"]);
			} finally {
				await shop.stop();
			}
		} finally {
			await ledger.stop();
		}
	});
});
