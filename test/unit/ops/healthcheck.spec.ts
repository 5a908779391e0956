import { target } from "../../../bin/healthcheck";

describe("container health check target", () => {
	it("asks the gateway's liveness endpoint on a node that runs the gateway", () => {
		expect(target({ SERVICES: "api", PORT: "8080" })).toEqual({ port: 8080, path: "/health/live" });
	});

	it("asks the gateway on the embedded default, which runs every service", () => {
		expect(target({})).toEqual({ port: 3000, path: "/health/live" });
	});

	it("asks the metrics endpoint on a node without the gateway", () => {
		expect(target({ SERVICES: "cart, orders,payments", METRICS_PORT: "9100" })).toEqual({ port: 9100, path: "/metrics" });
		expect(target({ SERVICES: "catalog" })).toEqual({ port: 3030, path: "/metrics" });
	});

	it("has nothing to ask on a node without the gateway and without metrics", () => {
		expect(target({ SERVICES: "catalog", METRICS_ENABLED: "false" })).toBeUndefined();
	});
});
