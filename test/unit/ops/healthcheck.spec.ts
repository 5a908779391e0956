import { target } from "../../../bin/healthcheck";

describe("container health check target", () => {
	it("asks every node's readiness on its metrics port, whatever services it runs", () => {
		expect(target({ SERVICES: "api", PORT: "8080" })).toEqual({ host: "127.0.0.1", port: 3030, path: "/health/ready" });
		expect(target({ SERVICES: "cart, orders,payments", METRICS_PORT: "9100" })).toEqual({ host: "127.0.0.1", port: 9100, path: "/health/ready" });
		expect(target({})).toEqual({ host: "127.0.0.1", port: 3030, path: "/health/ready" });
	});

	it("asks on loopback when the metrics port listens on every interface, else on the interface it is bound to", () => {
		expect(target({ METRICS_HOST: "0.0.0.0", METRICS_PORT: "3030" })).toEqual({ host: "127.0.0.1", port: 3030, path: "/health/ready" });
		expect(target({ METRICS_HOST: "10.0.1.7" })).toEqual({ host: "10.0.1.7", port: 3030, path: "/health/ready" });
	});

	it("asks the gateway's own readiness when metrics are off on a node that runs the gateway", () => {
		expect(target({ SERVICES: "api", PORT: "8080", METRICS_ENABLED: "false" })).toEqual({ host: "127.0.0.1", port: 8080, path: "/health/ready" });
		expect(target({ METRICS_ENABLED: "false" })).toEqual({ host: "127.0.0.1", port: 3000, path: "/health/ready" });
	});

	it("has nothing to ask on a node without the gateway and without metrics", () => {
		expect(target({ SERVICES: "catalog", METRICS_ENABLED: "false" })).toBeUndefined();
	});
});
