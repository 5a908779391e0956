/**
 * The fuzz tier (issue 9): for every route of the OpenAPI document the gateway serves, hostile
 * values (test/fuzz/hostile-values.ts, fast-check) for each path parameter, query parameter and
 * body field, and hostile bodies as a whole — on SQLite and on PostgreSQL in cluster form. Every
 * answer must be below 500, an error in API.md's shape, and no write may be accepted; afterwards
 * no row of any database has changed, every circuit breaker is closed and an honest client's
 * login, product page and checkout succeed.
 *
 * `FUZZ_SEED` replays a run (its seed is printed with the number of requests sent);
 * `FUZZ_RUNS` sets the values per parameter (default 4).
 */
import fc from "fast-check";
import { type Platform, type Send, adminLogin, checkout, openBreakers, product, register, settledRowCounts, startPlatform } from "../integration/hostile/support";
import { type BodyCase, hostilePathValue, hostileQueryShapes, hostileQueryValue, hostileTokenFor, structuralCases } from "./hostile-values";

jest.setTimeout(240_000);

const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 2_147_483_647);
const RUNS = Number(process.env.FUZZ_RUNS ?? 4);
const CONCURRENCY = 8;

interface Probe {
	method: string;
	path: string;
	what: string;
	token?: string;
	body?: BodyCase;
	headers?: Record<string, string>;
}

/** A value the schema takes, for the fields a probe leaves alone. */
function sample(schema: any): unknown {
	if (!schema) return "x";
	if (schema.enum) return schema.enum[0];
	if (schema.const !== undefined) return schema.const;
	if (schema.anyOf) return sample(schema.anyOf[0]);
	switch (schema.type) {
		case "string":
			return schema.format === "email" ? "fuzz@example.com" : schema.format === "url" ? "https://example.com/x.jpg" : "a".repeat(Math.max(1, schema.minLength ?? 1));
		case "integer":
		case "number":
			return schema.minimum ?? 1;
		case "boolean":
			return false;
		case "array":
			return Array.from({ length: schema.minItems ?? 0 }, () => sample(schema.items));
		case "object":
			return Object.fromEntries((schema.required ?? []).map((k: string) => [k, sample(schema.properties?.[k])]));
		default:
			return "x";
	}
}

const PLACEHOLDER = "__FUZZ_VALUE__";

/** The body text with one field (a top-level one, or one inside a top-level object) set to a raw JSON token. */
function withToken(baseline: Record<string, unknown>, path: string[], token: string): string {
	const copy = structuredClone(baseline) as Record<string, any>;
	if (path.length === 1) copy[path[0]] = PLACEHOLDER;
	else copy[path[0]] = { ...(typeof copy[path[0]] === "object" && copy[path[0]] ? copy[path[0]] : {}), [path[1]]: PLACEHOLDER };
	return JSON.stringify(copy).replace(JSON.stringify(PLACEHOLDER), token);
}

function probesOf(spec: any, tokens: { admin: string; customer: string }): Probe[] {
	const probes: Probe[] = [];
	const values = <T>(arb: fc.Arbitrary<T>, salt: number) => fc.sample(arb, { seed: SEED + salt, numRuns: RUNS });
	let salt = 0;
	for (const [template, ops] of Object.entries<any>(spec.paths)) {
		for (const [method, op] of Object.entries<any>(ops)) {
			const M = method.toUpperCase();
			const token = op.security?.length ? (/admin/.test(op.description ?? "") ? tokens.admin : tokens.customer) : undefined;
			const headers = op.operationId === "orders.create" ? { "idempotency-key": `fuzz-${SEED}` } : undefined;
			const params: any[] = op.parameters ?? [];
			const pathParams = params.filter(p => p.in === "path").map(p => p.name);
			const fill = (overrides: Record<string, string> = {}) => template.replace(/\{(\w+)\}/g, (_, n) => overrides[n] ?? "fuzz-1");
			for (const name of pathParams) for (const v of values(hostilePathValue, ++salt)) probes.push({ method: M, path: fill({ [name]: v }), what: `path ${name}`, token, headers });
			for (const q of params.filter(p => p.in === "query")) {
				for (const v of values(hostileQueryValue, ++salt)) probes.push({ method: M, path: `${fill()}?${q.name}=${v}`, what: `query ${q.name}`, token, headers });
				for (const shape of hostileQueryShapes(q.name)) probes.push({ method: M, path: `${fill()}?${shape}`, what: `query ${q.name} shape`, token, headers });
			}
			if (M !== "GET") probes.push({ method: M, path: `${fill()}?__proto__[x]=1`, what: "query prototype key", token, headers });
			const schema = op.requestBody?.content?.["application/json"]?.schema;
			if (!schema) continue;
			const baseline = sample(schema) as Record<string, unknown>;
			const fields: [string[], any][] = [];
			for (const [name, prop] of Object.entries<any>(schema.properties ?? {})) {
				fields.push([[name], prop]);
				if (prop.type === "object") for (const [inner, innerProp] of Object.entries<any>(prop.properties ?? {})) fields.push([[name, inner], innerProp]);
			}
			for (const [path, prop] of fields) {
				for (const t of values(hostileTokenFor(prop), ++salt)) probes.push({ method: M, path: fill(), what: `body ${path.join(".")}`, token, headers, body: { what: `${path.join(".")} = ${t.slice(0, 60)}`, text: withToken(baseline, path, t) } });
			}
			for (const c of structuralCases(baseline, Object.keys(baseline)[0])) probes.push({ method: M, path: fill(), what: `body: ${c.what}`, token, headers, body: c });
		}
	}
	return probes;
}

const ERROR_KEYS = new Set(["name", "message", "code", "type", "data"]);

/** Why an answer breaks the contract for a hostile request, or null when it holds. */
function violation(p: Probe, status: number, body: any, text: string): string | null {
	if (status >= 500) return `${status} ${text.slice(0, 200)}`;
	if (status < 400) return p.method === "GET" ? null : `a hostile write was accepted (${status})`;
	if (!body || typeof body !== "object" || Array.isArray(body)) return `error body is not an object: ${text.slice(0, 100)}`;
	const extra = Object.keys(body).filter(k => !ERROR_KEYS.has(k));
	if (extra.length) return `error body has ${extra.join(", ")}`;
	if (typeof body.name !== "string" || typeof body.message !== "string" || body.code !== status || !/^[A-Z][A-Z0-9_]*$/.test(String(body.type))) return `error shape: ${text.slice(0, 200)}`;
	if (status === 422 && !(Array.isArray(body.data) && body.data.every((d: any) => typeof d?.field === "string" && typeof d?.message === "string"))) return `422 without field problems: ${text.slice(0, 200)}`;
	if (/\n\s+at |\.ts:\d+|node_modules/.test(text)) return "a stack trace in the answer";
	return null;
}

async function runAll(send: Send, probes: Probe[]): Promise<{ problems: string[]; statuses: Record<number, number> }> {
	const problems: string[] = [];
	const statuses: Record<number, number> = {};
	let next = 0;
	const worker = async () => {
		while (next < probes.length) {
			const p = probes[next++];
			const r = await send(p.method, p.path, { token: p.token, headers: { ...p.headers, ...p.body?.headers }, body: p.body?.text });
			statuses[r.status] = (statuses[r.status] ?? 0) + 1;
			const v = violation(p, r.status, r.body, r.text);
			if (v) problems.push(`${p.method} ${p.path.slice(0, 120)} [${p.what}${p.body ? `: ${p.body.what}` : ""}] → ${v}`);
		}
	};
	await Promise.all(Array.from({ length: CONCURRENCY }, worker));
	return { problems, statuses };
}

describe.each(["SQLite", "PostgreSQL"] as const)("fuzzing every route of the contract on %s", db => {
	let platform: Platform;

	beforeAll(async () => {
		platform = await startPlatform(db);
	});

	afterAll(async () => {
		await platform?.stop();
	});

	it("answers every hostile request below 500 in API.md's error shape, writes nothing, and leaves the breakers closed for honest requests", async () => {
		const { send } = platform;
		const admin = await adminLogin(send);
		const customer = await register(send, `fuzz-${db.toLowerCase()}@example.com`, "fuzz-password-1", "192.0.2.77");
		const P = await product(send, admin, `FUZZ-${db}`, 2500, 500);
		const spec = (await send("GET", "/api/openapi.json")).body;
		const probes = probesOf(spec, { admin, customer: customer.token });
		const routes = Object.values<any>(spec.paths).reduce((n, ops) => n + Object.keys(ops).length, 0);

		const before = await settledRowCounts(platform);
		const started = Date.now();
		const { problems, statuses } = await runAll(send, probes);
		console.log(`fuzz ${db}: seed=${SEED} requests=${probes.length} routes=${routes} runs=${RUNS} in ${((Date.now() - started) / 1000).toFixed(1)} s, answers ${JSON.stringify(statuses)} (replay: FUZZ_SEED=${SEED})`);
		expect(problems).toEqual([]);
		// The probes reach the handlers' validation, not only the gateway's authentication.
		expect((statuses[422] ?? 0) + (statuses[400] ?? 0)).toBeGreaterThan(probes.length / 2);
		expect(await settledRowCounts(platform)).toEqual(before);
		expect(openBreakers(platform)).toEqual({});

		const token = (await send("POST", "/auth/login", { from: "192.0.2.77", body: { email: `fuzz-${db.toLowerCase()}@example.com`, password: "fuzz-password-1" } })).body.accessToken;
		expect((await send("GET", `/products/${P.id}`)).status).toBe(200);
		const order = await checkout(send, token, [{ productId: P.id, quantity: 2 }]);
		expect([order.status, order.body.status]).toEqual([201, "CONFIRMED"]);
		expect(routes).toBeGreaterThanOrEqual(40);
	});
});
