/**
 * Spans record action params (lib/tracing.ts); credentials must never be among what they keep.
 * Redaction is by declaration: this checks the declaration covers every action of every service.
 */
import { REDACTED, SECRET_FIELDS, correlationIds, redact } from "../../../lib/tracing";
import { useTestEnv } from "../../support/env";

/** Looks like a credential, by its name. */
const CREDENTIAL_NAME = /pass(word)?|secret|token|credential|api[-_]?key|private[-_]?key|cookie|authori[sz]ation/i;

function actionsOf(schema: any): [string, any][] {
	const own = Object.entries(schema.actions ?? {}) as [string, any][];
	return [...(schema.mixins ?? []).flatMap((m: any) => actionsOf(m)), ...own];
}

/** Every param name of a fastest-validator schema, nested objects and array items included. */
function paramNames(params: Record<string, any> | undefined, prefix = ""): string[] {
	if (!params || typeof params !== "object") return [];
	return Object.entries(params).flatMap(([name, rule]) => {
		if (name.startsWith("$$")) return [];
		const nested = typeof rule === "object" && rule ? [...paramNames(rule.props ?? rule.properties, `${prefix}${name}.`), ...paramNames(rule.items?.props, `${prefix}${name}[].`)] : [];
		return [`${prefix}${name}`, ...nested];
	});
}

describe("span redaction", () => {
	it("declares as secret every param of every action whose name says it holds a credential", () => {
		useTestEnv();
		const { availableServices, loadServiceSchema } = require("../../../services") as typeof import("../../../services");
		const uncovered: string[] = [];
		let seen = 0;
		for (const service of availableServices()) {
			for (const [action, def] of actionsOf(loadServiceSchema(service))) {
				const declared = new Set<string>((def?.secretParams ?? []).map((f: string) => f.toLowerCase()));
				for (const path of paramNames(def?.params)) {
					seen++;
					const field = path.split(/[.[\]]+/).filter(Boolean).pop()!;
					if (CREDENTIAL_NAME.test(field) && !SECRET_FIELDS.has(field.toLowerCase()) && !declared.has(field.toLowerCase())) uncovered.push(`${service}.${action}: ${path}`);
				}
			}
		}
		expect(seen).toBeGreaterThan(50);
		expect(uncovered).toEqual([]);
	});

	it("replaces secrets at any depth, keeps the rest, and drops what is not plain data", () => {
		const params = { email: "a@b.c", password: "hunter2-hunter2", nested: { refreshToken: "rt", list: [{ paymentToken: "tok_visa", quantity: 2 }] }, req: new (class Req {})() };
		expect(redact(params)).toEqual({ email: "a@b.c", password: REDACTED, nested: { refreshToken: REDACTED, list: [{ paymentToken: REDACTED, quantity: 2 }] }, req: undefined });
		expect(redact({ PassWord: "x", apiSecretCode: "y" }, new Set(["apisecretcode"]))).toEqual({ PassWord: REDACTED, apiSecretCode: REDACTED });
	});

	it("names the order and the saga a call belongs to, from its params, its idempotency key or its answer", () => {
		const sagaId = "a8260396-283e-4e07-b624-4c97e3c85185";
		expect(correlationIds({ orderId: "o-1", idempotencyKey: `${sagaId}:authorize` }, {})).toEqual({ orderId: "o-1", sagaId });
		expect(correlationIds({}, {}, { id: "o-2", number: "MC-1001", status: "CONFIRMED" })).toEqual({ orderId: "o-2" });
		expect(correlationIds({ idempotencyKey: "client-key-1" }, {})).toEqual({});
	});
});
