/**
 * The monitoring configuration as data, for the tests: the Grafana dashboards, the Prometheus
 * alert rules, and the metric names their PromQL uses (parsed with Prometheus' own grammar,
 * @prometheus-io/lezer-promql — not with regular expressions).
 */
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { parser } from "@prometheus-io/lezer-promql";
import { parse as parseYaml } from "yaml";

export const DEPLOY_DIR = join(__dirname, "..", "..", "deploy");
const DASHBOARD_DIR = join(DEPLOY_DIR, "grafana", "dashboards");

export interface Dashboard {
	file: string;
	json: any;
}

export function dashboards(): Dashboard[] {
	return readdirSync(DASHBOARD_DIR)
		.filter(f => f.endsWith(".json"))
		.map(f => ({ file: f, json: JSON.parse(readFileSync(join(DASHBOARD_DIR, f), "utf8")) }));
}

/** Every panel, rows' nested panels included, without the rows themselves. */
export function panelsOf(dashboard: any): any[] {
	return (dashboard.panels ?? []).flatMap((p: any) => (p.type === "row" ? (p.panels ?? []) : [p]));
}

export function dashboardExpressions(dashboard: any): { panel: string; expr: string }[] {
	return panelsOf(dashboard).flatMap(p => (p.targets ?? []).map((t: any) => ({ panel: p.title, expr: t.expr })));
}

export function alertRules(): { alert: string; expr: string; labels?: Record<string, string> }[] {
	const doc = parseYaml(readFileSync(join(DEPLOY_DIR, "prometheus", "alerts.yml"), "utf8"));
	return doc.groups.flatMap((g: any) => g.rules);
}

/** The metric names an expression selects; throws when the expression does not parse. */
export function metricNames(expr: string): string[] {
	const names = new Set<string>();
	const errors: number[] = [];
	parser.parse(expr).iterate({
		enter(node) {
			if (node.type.isError) errors.push(node.from);
			if (node.name === "Identifier" && node.node.parent?.name === "VectorSelector") names.add(expr.slice(node.from, node.to));
		},
	});
	if (errors.length) throw new Error(`PromQL does not parse at ${errors.join(", ")}: ${expr}`);
	return [...names];
}

/** Series Prometheus makes itself, not the nodes. */
export const PROMETHEUS_OWN = new Set(["up", "scrape_duration_seconds", "scrape_samples_scraped"]);

/** Every metric name used by the dashboards and the alert rules, with where it is used. */
export function monitoredMetrics(): Map<string, string[]> {
	const used = new Map<string, string[]>();
	const note = (name: string, where: string) => used.set(name, [...(used.get(name) ?? []), where]);
	for (const d of dashboards()) for (const { panel, expr } of dashboardExpressions(d.json)) for (const n of metricNames(expr)) note(n, `${d.file}: ${panel}`);
	for (const r of alertRules()) for (const n of metricNames(r.expr)) note(n, `alert ${r.alert}`);
	return used;
}
