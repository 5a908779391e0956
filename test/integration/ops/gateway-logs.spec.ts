/**
 * What a gateway logs when a service it routes to is not there (yet): a cluster that is starting
 * answers 503 for a moment, and that is expected — one warning line with the request id, never an
 * ERROR with a stack trace.
 */
import type { ServiceBroker } from "moleculer";
import { useTestEnv } from "../../support/env";

let broker: ServiceBroker;
let base = "";

beforeAll(async () => {
	useTestEnv();
	const { createBroker } = require("../../../lib/broker") as typeof import("../../../lib/broker");
	broker = createBroker(["api"], { logger: false, namespace: `logs-${Math.random()}` });
	await broker.start();
	base = `http://127.0.0.1:${(broker.getLocalService("api") as any).server.address().port}`;
});

afterAll(() => broker?.stop());

it("logs a 503 for a service not yet up as one warning line, without an error or a stack", async () => {
	const api: any = broker.getLocalService("api");
	const error = jest.spyOn(api.logger, "error");
	const warn = jest.spyOn(api.logger, "warn");
	const res = await fetch(`${base}/api/v1/products`, { headers: { "x-request-id": "starting-up-1" } });
	expect(res.status).toBe(503);
	expect(await res.json()).toMatchObject({ code: 503, type: expect.stringMatching(/^SERVICE_/) });
	expect(error).not.toHaveBeenCalled();
	expect(warn).toHaveBeenCalledTimes(1);
	expect(warn.mock.calls[0]).toEqual([expect.stringMatching(/^GET \/api\/v1\/products answered 503 SERVICE_\w+: /), { requestId: "starting-up-1" }]);
	expect(JSON.stringify(warn.mock.calls)).not.toMatch(/\n\s+at /);
});
