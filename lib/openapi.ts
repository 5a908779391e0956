/**
 * OpenAPI 3 from the route table and the actions' own parameter schemas (fastest-validator),
 * so the published contract cannot drift from what the services validate.
 */
type FvRule = string | Record<string, any> | FvRule[];

function fvToJsonSchema(rule: FvRule): Record<string, unknown> {
	if (Array.isArray(rule)) return { anyOf: rule.map(fvToJsonSchema) };
	const r: Record<string, any> = typeof rule === "string" ? parseShorthand(rule) : rule;
	const out: Record<string, unknown> = {};
	switch (r.type) {
		case "string":
		case "email":
		case "uuid":
		case "url":
			out.type = "string";
			if (r.type !== "string") out.format = r.type;
			if (r.min !== undefined) out.minLength = Number(r.min);
			if (r.max !== undefined) out.maxLength = Number(r.max);
			if (r.length !== undefined) out.minLength = out.maxLength = Number(r.length);
			break;
		case "number":
			out.type = r.integer ? "integer" : "number";
			if (r.min !== undefined) out.minimum = Number(r.min);
			if (r.max !== undefined) out.maximum = Number(r.max);
			if (r.positive) out.exclusiveMinimum = 0;
			break;
		case "boolean":
			out.type = "boolean";
			break;
		case "enum":
			out.enum = r.values;
			break;
		case "equal":
			out.const = r.value;
			break;
		case "array":
			out.type = "array";
			if (r.items) out.items = fvToJsonSchema(r.items);
			if (r.min !== undefined) out.minItems = Number(r.min);
			if (r.max !== undefined) out.maxItems = Number(r.max);
			break;
		case "object":
			Object.assign(out, objectSchema(r.props ?? r.properties ?? {}));
			break;
		default:
			break;
	}
	return out;
}

function parseShorthand(s: string): Record<string, any> {
	const [type, ...mods] = s.split("|");
	const r: Record<string, any> = { type };
	for (const m of mods) {
		const [k, v] = m.split(":");
		r[k] = v === undefined ? true : v;
	}
	return r;
}

function objectSchema(props: Record<string, FvRule>): Record<string, unknown> {
	const properties: Record<string, unknown> = {};
	const required: string[] = [];
	for (const [name, rule] of Object.entries(props)) {
		if (name.startsWith("$$")) continue;
		properties[name] = fvToJsonSchema(rule);
		const optional = typeof rule === "string" ? /\|optional\b/.test(rule) || rule.endsWith("?") : !Array.isArray(rule) && (rule.optional || rule.default !== undefined);
		if (!optional) required.push(name);
	}
	return { type: "object", properties, ...(required.length ? { required } : {}), additionalProperties: false };
}

const ERROR_SCHEMA = {
	type: "object",
	required: ["name", "message", "code", "type"],
	properties: {
		name: { type: "string" },
		message: { type: "string" },
		code: { type: "integer" },
		type: { type: "string" },
		data: { type: "array", items: { type: "object", properties: { field: { type: "string" }, message: { type: "string" } } } },
	},
};

export function buildOpenApi(routes: Record<string, string>, actionOf: (name: string) => any): Record<string, unknown> {
	const paths: Record<string, Record<string, unknown>> = {};
	for (const [route, actionName] of Object.entries(routes)) {
		const [method, path] = route.split(" ");
		const oaPath = "/api/v1" + path.replace(/:(\w+)/g, "{$1}");
		const pathParams = [...path.matchAll(/:(\w+)/g)].map(m => m[1]);
		const action = actionOf(actionName);
		const params: Record<string, FvRule> = { ...(action?.params ?? {}) };
		for (const p of pathParams) delete params[p];
		const op: Record<string, any> = {
			operationId: actionName,
			tags: [actionName.split(".")[0]],
			parameters: pathParams.map(p => ({ name: p, in: "path", required: true, schema: { type: "string" } })),
			responses: {
				default: { description: "Error", content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } } },
				"200": { description: "OK" },
			},
		};
		if (action?.auth && action.auth !== "public") {
			op.security = [{ bearer: [] }];
			op.description = `Requires a ${action.auth === "any" ? "signed-in user" : action.auth}${action.roles?.length ? ` with role ${action.roles.join(" or ")}` : ""}.`;
		}
		if (method === "GET" || method === "DELETE") {
			for (const [name, rule] of Object.entries(params)) {
				if (name.startsWith("$$")) continue;
				op.parameters.push({ name, in: "query", required: false, schema: fvToJsonSchema(rule) });
			}
		} else if (Object.keys(params).length) {
			op.requestBody = { required: true, content: { "application/json": { schema: objectSchema(params) } } };
		}
		if (actionName === "orders.create") {
			op.parameters.push({ name: "Idempotency-Key", in: "header", required: true, schema: { type: "string", minLength: 1, maxLength: 255 } });
		}
		paths[oaPath] ??= {};
		paths[oaPath][method.toLowerCase()] = op;
	}
	return {
		openapi: "3.0.3",
		info: { title: "moleculer-commerce public API", version: "1.0.0", description: "The REST contract of shared/API.md." },
		servers: [{ url: "/" }],
		components: { securitySchemes: { bearer: { type: "http", scheme: "bearer", bearerFormat: "JWT" } }, schemas: { Error: ERROR_SCHEMA } },
		paths,
	};
}

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, ch => `&#${ch.charCodeAt(0)};`);

/** A self-contained page (no CDN): the endpoints, grouped by service, linking to the JSON. */
export function renderDocsPage(spec: any): string {
	const rows = Object.entries(spec.paths as Record<string, Record<string, any>>)
		.flatMap(([path, ops]) => Object.entries(ops).map(([m, op]) => ({ path, m: m.toUpperCase(), op })))
		.sort((a, b) => a.op.tags[0].localeCompare(b.op.tags[0]) || a.path.localeCompare(b.path));
	const body = rows
		.map(r => `<tr><td><code>${r.m}</code></td><td><code>${escapeHtml(r.path)}</code></td><td>${escapeHtml(r.op.tags[0])}</td><td>${escapeHtml(r.op.description ?? "public")}</td></tr>`)
		.join("\n");
	return `<!doctype html><html><head><meta charset="utf-8"><title>${escapeHtml(spec.info.title)}</title>
<style>body{font-family:system-ui,sans-serif;margin:2rem}table{border-collapse:collapse}td,th{padding:.3rem .8rem;border-bottom:1px solid #ddd;text-align:left}</style></head>
<body><h1>${escapeHtml(spec.info.title)}</h1><p>Machine-readable contract: <a href="/api/openapi.json">/api/openapi.json</a> (OpenAPI 3).</p>
<table><thead><tr><th>Method</th><th>Path</th><th>Service</th><th>Access</th></tr></thead><tbody>
${body}
</tbody></table></body></html>`;
}
