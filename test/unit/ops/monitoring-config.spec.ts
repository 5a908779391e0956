/**
 * The monitoring configuration of the stack (deploy/): Grafana dashboards valid against Grafana's
 * own dashboard schema, PromQL that parses, the panels and alerts operators need, and docs that
 * list them. promtool checks the Prometheus files themselves (bin/run-tests.mjs), and
 * test/integration/ops/observability.spec.ts that every metric named here is really exported.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import Ajv from "ajv";
import { createGenerator } from "ts-json-schema-generator";
import { alertRules, dashboardExpressions, dashboards, metricNames, panelsOf } from "../../support/monitoring";

const root = join(__dirname, "../../..");

describe("Grafana dashboards", () => {
	it("are valid against Grafana's dashboard schema (the Dashboard type of @grafana/schema, checked with ajv)", () => {
		// Grafana publishes its dashboard model as TypeScript (generated from its CUE kinds); we turn
		// that into JSON Schema and let ajv judge every dashboard file by it.
		const schema = createGenerator({
			path: join(root, "node_modules/@grafana/schema/dist/types/raw/dashboard/x/types.gen.d.ts"),
			type: "Dashboard",
			skipTypeCheck: true,
			additionalProperties: false,
		}).createSchema("Dashboard");
		const validate = new Ajv({ allErrors: true, strict: false }).compile(schema);
		const found = dashboards();
		expect(found.length).toBeGreaterThan(0);
		for (const d of found) {
			const ok = validate(d.json);
			expect({ file: d.file, errors: ok ? [] : validate.errors }).toEqual({ file: d.file, errors: [] });
		}
	}, 60_000);

	it("have unique panel ids, a uid, and every panel a title, a description and a query", () => {
		for (const { json } of dashboards()) {
			expect(json.uid).toMatch(/^[a-z0-9-]+$/);
			const ids = json.panels.map((p: any) => p.id);
			expect(new Set(ids).size).toBe(ids.length);
			for (const p of panelsOf(json)) expect({ title: p.title, described: Boolean(p.description), queries: (p.targets ?? []).length > 0 }).toEqual({ title: expect.any(String), described: true, queries: true });
		}
	});

	it("show what an operator of the checkout watches", () => {
		const titles = dashboards().flatMap(d => panelsOf(d.json).map(p => p.title));
		for (const needed of ["Checkouts per second", "Checkout latency p50 / p99", "Saga outcomes", "STUCK sagas", "Outbox pending", "Dead letters", "JetStream lag", "Circuit breakers", "Action latency p99", "Event-loop lag p99", "PostgreSQL pool use", "Nodes ready"]) {
			expect(titles).toContain(needed);
		}
	});

	it("query in PromQL that parses", () => {
		for (const d of dashboards()) for (const { expr } of dashboardExpressions(d.json)) expect(() => metricNames(expr)).not.toThrow();
	});

	it("are listed panel by panel in docs/OPERATIONS.md", () => {
		const ops = readFileSync(join(root, "docs/OPERATIONS.md"), "utf8");
		for (const d of dashboards()) {
			expect(ops).toContain(`deploy/grafana/dashboards/${d.file}`);
			for (const p of panelsOf(d.json)) expect(ops).toContain(`**${p.title}**`);
		}
	});
});

describe("Prometheus alert rules", () => {
	it("cover a STUCK saga, dead letters, outbox lag, an open breaker, the checkout p99 and a node not ready", () => {
		const rules = alertRules();
		const byName = Object.fromEntries(rules.map(r => [r.alert, r.expr]));
		expect(byName).toEqual(
			expect.objectContaining({
				SagaStuck: expect.stringContaining('saga_instances{status="STUCK"}'),
				OutboxDeadLetters: expect.stringContaining('outbox_events{state="DEAD"}'),
				JetStreamDeadLetters: expect.stringContaining("jetstream_dead_letters"),
				OutboxLagging: expect.stringContaining("outbox_oldest_pending_age_seconds"),
				CircuitBreakerOpen: expect.stringContaining("moleculer_circuit_breaker_opened_active"),
				CheckoutLatencyHigh: expect.stringContaining("checkout_duration_seconds_bucket"),
				NodeNotReady: expect.stringContaining("node_ready"),
			}),
		);
		for (const r of rules) expect(() => metricNames(r.expr)).not.toThrow();
	});

	it("are each described in docs/OPERATIONS.md", () => {
		const ops = readFileSync(join(root, "docs/OPERATIONS.md"), "utf8");
		for (const r of alertRules()) expect(ops).toContain(`\`${r.alert}\``);
	});
});
