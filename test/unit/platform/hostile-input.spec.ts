/**
 * The pure rules behind issue 9 (hostile input): text, parameters, bodies, client addresses,
 * limits, emails, money, paging, duplicate lines and which errors the circuit breaker counts.
 */
import { Readable } from "node:stream";
import { brotliCompressSync, gzipSync } from "node:zlib";
import fc from "fast-check";
import { Errors } from "moleculer";
import { clientAddress, parseTrustProxy, trustFunction } from "../../../lib/client-address";
import { DependencyUnavailableError, UnprocessableError, countsAgainstHealth, isSafeToRetry } from "../../../lib/errors";
import { checkJsonStructure, parseJsonBody, readBodyText } from "../../../lib/http-body";
import { toErrorBody, upperSnake } from "../../../lib/http-errors";
import { emailProblem, normaliseEmail, parseEmail } from "../../../lib/identity/email";
import { LOGIN_THROTTLE, FRESH, admit, bucketKey, countAttempt, current, delayAfter } from "../../../lib/identity/login-throttle";
import { MAX_ORDER_TOTAL_CENTS, checkOrderTotal, parseInt8 } from "../../../lib/money";
import { checkDistinctLines } from "../../../lib/orders/lines";
import { MAX_PAGE, clampPaging } from "../../../lib/paging";
import { authBucket, generalBucket } from "../../../lib/rate-limit";
import { hasInvisible, textProblem } from "../../../lib/text";
import { StrictValidator, inspectParams } from "../../../lib/validator";
import { useTestEnv } from "../../support/env";

const codeOf = (fn: () => unknown) => {
	try {
		fn();
	} catch (err: any) {
		return `${err.code} ${err.type}`;
	}
	return "ok";
};

describe("text a client may send", () => {
	it("refuses control characters and lone surrogates, and keeps tabs, new lines, accents and emoji", () => {
		for (const bad of ["a\u0000", "\u0001", "x\u001by", "\u007f", "\u0085", "\u009f", "\ud800", "x\udc00", "\udbffx"]) expect([bad, textProblem(bad)]).toEqual([bad, expect.any(String)]);
		for (const good of ["Lee", "line\nnext\r\n\ttab", "Zoë", "\u{1F600}\u200d\u{1F4BB}", ""]) expect(textProblem(good)).toBeNull();
	});

	it("knows invisible characters", () => {
		expect(["a\u200bb", "\ufeff", "a\u00adb", "\u202e", "a\u2028"].map(hasInvisible)).toEqual([true, true, true, true, true]);
		expect(hasInvisible("plain text")).toBe(false);
	});
});

describe("parameters before their schema", () => {
	it("finds forbidden keys, bad text, foreign prototypes and depth anywhere, with the field's path", () => {
		const polluted = JSON.parse('{"a": {"__proto__": {"x": 1}}, "b": [{"constructor": 1}], "c": "x\\u0000"}');
		expect(inspectParams(polluted).map(p => p.field).sort()).toEqual(["a.__proto__", "b[0].constructor", "c"]);
		expect(inspectParams({ d: Object.create({ inherited: 1 }) })).toEqual([expect.objectContaining({ type: "objectPrototype", field: "d" })]);
		let deep: any = 1;
		for (let i = 0; i < 100; i++) deep = [deep];
		expect(inspectParams({ deep })).toEqual([expect.objectContaining({ type: "objectDepth" })]);
		expect(inspectParams({ when: new Date(), ok: ["a", { b: 1 }] })).toEqual([]);
	});

	it("makes a public action without a schema take no parameters at all", async () => {
		const validator = new (StrictValidator as any)();
		const mw = validator.middleware({ Promise });
		const handler = jest.fn(async () => "done");
		const wrapped = mw.localAction(handler, { name: "cart.clear", auth: "customer" });
		await expect(wrapped({ params: { everything: true }, nodeID: "n", action: { name: "cart.clear" } })).rejects.toMatchObject({ code: 422 });
		expect(await wrapped({ params: {}, nodeID: "n", action: { name: "cart.clear" } })).toBe("done");
		// an internal action without a schema is as Moleculer has it
		expect(mw.localAction(handler, { name: "x.internal" })).toBe(handler);
	});
});

describe("JSON bodies", () => {
	// Integers beyond ±(2^53 - 1) are refused by rule (see below); everything else must come back as sent.
	const safeJson = fc.jsonValue({ maxDepth: 6 }).filter(v => !/"(__proto__|constructor)"/.test(JSON.stringify(v)) && !/(^|[^\d.eE])-?\d{16,}(?![\d.eE])/.test(JSON.stringify(v)));

	it("parse back to the very value sent, whatever well-formed object it is", () => {
		fc.assert(
			fc.property(fc.dictionary(fc.string().filter(k => k !== "__proto__" && k !== "constructor"), safeJson), obj => {
				const text = JSON.stringify(obj);
				expect(parseJsonBody(text, 16)).toEqual(JSON.parse(text));
			}),
			{ numRuns: 300 },
		);
	});

	it("refuse duplicate member names, however they are spelled, and prototype keys at any depth", () => {
		expect(codeOf(() => checkJsonStructure('{"a": 1, "\\u0061": 2}', 16))).toBe("400 DUPLICATE_JSON_KEY");
		expect(codeOf(() => checkJsonStructure('{"a": {"b": 1, "b": 2}}', 16))).toBe("400 DUPLICATE_JSON_KEY");
		expect(codeOf(() => checkJsonStructure('[{"a": 1}, {"a": 2}]', 16))).toBe("ok");
		expect(codeOf(() => checkJsonStructure('{"x": [{"y": {"__proto__": 1}}]}', 16))).toBe("422 VALIDATION_ERROR");
		expect(codeOf(() => checkJsonStructure('{"s": "{\\"__proto__\\": [[[["}', 16))).toBe("ok");
	});

	it("refuse nesting beyond the limit without recursing", () => {
		expect(codeOf(() => checkJsonStructure("[".repeat(17) + "]".repeat(17), 16))).toBe("400 JSON_TOO_DEEP");
		expect(codeOf(() => checkJsonStructure("[".repeat(16) + "]".repeat(16), 16))).toBe("ok");
		expect(codeOf(() => parseJsonBody("[".repeat(500_000), 16))).toBe("400 JSON_TOO_DEEP");
	});

	it("refuse numbers that do not parse to themselves, and tops that are not objects", () => {
		expect(codeOf(() => parseJsonBody('{"n": 1e400}', 16))).toBe("422 VALIDATION_ERROR");
		expect(codeOf(() => parseJsonBody('{"n": 9007199254740993}', 16))).toBe("422 VALIDATION_ERROR");
		expect(parseJsonBody('{"n": 9007199254740991, "f": 1e20, "d": 0.1}', 16)).toEqual({ n: 9007199254740991, f: 1e20, d: 0.1 });
		expect(codeOf(() => parseJsonBody("[]", 16))).toBe("422 VALIDATION_ERROR");
		expect(codeOf(() => parseJsonBody('"x"', 16))).toBe("422 VALIDATION_ERROR");
		expect(parseJsonBody("  ", 16)).toBeUndefined();
	});

	const request = (body: Buffer, headers: Record<string, string>) => Object.assign(Readable.from([body]), { headers: { "content-length": String(body.length), ...headers } }) as any;
	const read = (body: Buffer, headers: Record<string, string> = {}, limitBytes = 1024) =>
		readBodyText(request(body, headers), { limitBytes, maxDepth: 16 }).then(
			t => t,
			(e: any) => `${e.code} ${e.type}`,
		);

	it("decompress gzip and br, and answer bodies that are not what they say with 400, too large ones with 413", async () => {
		const json = Buffer.from('{"a":"ü"}');
		expect(await read(gzipSync(json), { "content-encoding": "gzip" })).toBe('{"a":"ü"}');
		expect(await read(brotliCompressSync(json), { "content-encoding": "br" })).toBe('{"a":"ü"}');
		expect(await read(json, { "content-encoding": "gzip" })).toBe("400 INVALID_CONTENT_ENCODING");
		expect(await read(gzipSync(json).subarray(0, 10), { "content-encoding": "gzip" })).toBe("400 INVALID_CONTENT_ENCODING");
		expect(await read(json, { "content-encoding": "br" })).toBe("400 INVALID_CONTENT_ENCODING");
		expect(await read(json, { "content-encoding": "zstd" })).toBe("415 UNSUPPORTED_CONTENT_ENCODING");
		expect(await read(gzipSync(Buffer.alloc(100_000, 0x20)), { "content-encoding": "gzip" })).toBe("413 PAYLOAD_TOO_LARGE");
		expect(await read(Buffer.alloc(2000, 0x20))).toBe("413 PAYLOAD_TOO_LARGE");
		expect(await read(Buffer.from([0x22, 0xc3, 0x28, 0x22]))).toBe("400 INVALID_UTF8");
	});
});

describe("client addresses", () => {
	const req = (peer: string, xff?: string) => ({ socket: { remoteAddress: peer }, connection: { remoteAddress: peer }, headers: xff ? { "x-forwarded-for": xff } : {} }) as any;

	it("are the socket's peer unless a proxy is trusted, then the right-most entry it did not write", () => {
		expect(parseTrustProxy("false")).toBe(false);
		expect(parseTrustProxy("true")).toBe(1);
		expect(parseTrustProxy("2")).toBe(2);
		expect(parseTrustProxy("loopback, 10.0.0.0/8")).toEqual(["loopback", "10.0.0.0/8"]);
		expect(() => parseTrustProxy("not an address")).toThrow();
		expect(clientAddress(req("10.0.0.5", "6.6.6.6, 1.2.3.4"), trustFunction(false))).toBe("10.0.0.5");
		expect(clientAddress(req("10.0.0.5", "6.6.6.6, 1.2.3.4"), trustFunction(1))).toBe("1.2.3.4");
		expect(clientAddress(req("10.0.0.5", "6.6.6.6, 1.2.3.4, 10.0.0.9"), trustFunction(["10.0.0.0/8"]))).toBe("1.2.3.4");
		expect(clientAddress(req("10.0.0.5", "6.6.6.6, 1.2.3.4"), trustFunction(2))).toBe("6.6.6.6");
		expect(clientAddress(req("203.0.113.1", "6.6.6.6"), trustFunction(["10.0.0.0/8"]))).toBe("203.0.113.1");
	});

	it("key the credential buckets by address or token, never by the signed-in user", () => {
		expect(authBucket("auth.login", "1.2.3.4")).toBe("login:ip:1.2.3.4");
		expect(authBucket("auth.register", "1.2.3.4")).toBe("register:ip:1.2.3.4");
		expect(authBucket("auth.refresh", "1.2.3.4", { refreshToken: "t" })).toMatch(/^refresh:token:/);
		expect(authBucket("auth.refresh", "1.2.3.4", { refreshToken: "t" })).toBe(authBucket("auth.refresh", "5.6.7.8", { refreshToken: "t" }));
		expect(authBucket("catalog.list", "1.2.3.4")).toBeUndefined();
		expect([generalBucket("u1", "1.2.3.4"), generalBucket(undefined, "1.2.3.4")]).toEqual(["all:user:u1", "all:ip:1.2.3.4"]);
	});
});

describe("login throttling per account", () => {
	it("lets the free failures through, then waits 1 s doubling to at most 5 minutes", () => {
		const delays = Array.from({ length: 16 }, (_, i) => delayAfter(i + 1));
		expect(delays).toEqual([0, 0, 0, 0, 1000, 2000, 4000, 8000, 16_000, 32_000, 64_000, 128_000, 256_000, 300_000, 300_000, 300_000]);
	});

	it("refuses while waiting without counting, and forgets after a quiet day", () => {
		let s = FRESH;
		for (let i = 0; i < LOGIN_THROTTLE.FREE_FAILURES; i++) s = countAttempt(s, 1000);
		expect(admit(s, 1000)).toEqual({ allowed: false, retryAfterS: 1 });
		expect(admit(s, 2000)).toEqual({ allowed: true });
		expect(current(s, 1000 + LOGIN_THROTTLE.RESET_AFTER_MS + 1)).toEqual(FRESH);
		expect(bucketKey("a@x.com")).not.toBe(bucketKey("a@x.com", "1.2.3.4"));
	});
});

describe("emails", () => {
	it("compare after NFC, trimming, lower-casing and one spelling of the domain", () => {
		expect(new Set(["zo\u00eb@example.com", "ZOE\u0308@Example.COM ", " zo\u00eb@EXAMPLE.com"].map(normaliseEmail))).toEqual(new Set(["zo\u00eb@example.com"]));
		expect(normaliseEmail("a@xn--mnchen-3ya.de")).toBe(normaliseEmail("A@MÜNCHEN.de"));
		fc.assert(fc.property(fc.string(), s => normaliseEmail(normaliseEmail(s)) === normaliseEmail(s)));
	});

	it("refuse invisible characters, control characters and addresses that are not addresses", () => {
		for (const bad of ["a\u200b@example.com", "a@example.com.", "x@b@example.com", "<script>@example.com", '"a"@example.com', "a@[127.0.0.1]", "a\u0000@example.com", "a@localhost", "plain"]) {
			expect([bad, emailProblem(bad)]).toEqual([bad, expect.any(String)]);
		}
		expect(codeOf(() => parseEmail("x@b@example.com"))).toBe("422 VALIDATION_ERROR");
		expect(parseEmail(" Someone.Else+tag@Example.org ")).toBe("someone.else+tag@example.org");
	});
});

describe("money and lists", () => {
	it("takes orders up to $10,000,000.00 and refuses larger ones with 422 ORDER_TOO_LARGE", () => {
		expect(codeOf(() => checkOrderTotal(MAX_ORDER_TOTAL_CENTS))).toBe("ok");
		expect(codeOf(() => checkOrderTotal(MAX_ORDER_TOTAL_CENTS + 1))).toBe("422 ORDER_TOO_LARGE");
		expect(codeOf(() => checkOrderTotal(22 * 100_000_000))).toBe("422 ORDER_TOO_LARGE");
		expect(codeOf(() => checkOrderTotal(Number.POSITIVE_INFINITY))).toBe("422 ORDER_TOO_LARGE");
	});

	it("reads PostgreSQL int8 as exact numbers or not at all", () => {
		expect(parseInt8("9007199254740991")).toBe(Number.MAX_SAFE_INTEGER);
		expect(parseInt8("-42")).toBe(-42);
		expect(() => parseInt8("9007199254740993")).toThrow(RangeError);
	});

	it("clamps any page to 1..1,000,000 and any size to 1..100", () => {
		expect(clampPaging(1e20, 1e20)).toEqual({ page: MAX_PAGE, pageSize: 100, offset: (MAX_PAGE - 1) * 100 });
		expect(clampPaging(-1e20, 0)).toEqual({ page: 1, pageSize: 1, offset: 0 });
		expect(clampPaging(Number.NaN, undefined)).toEqual({ page: 1, pageSize: 20, offset: 0 });
		fc.assert(fc.property(fc.double(), fc.double(), (p, s) => Number.isSafeInteger(clampPaging(p, s).offset)));
	});

	it("refuses a product named twice in one order, saying where", () => {
		expect(codeOf(() => checkDistinctLines([{ productId: "P" }, { productId: "Q" }, { productId: "P" }]))).toBe("422 DUPLICATE_LINE");
		expect(codeOf(() => checkDistinctLines([{ productId: "P" }, { productId: "Q" }]))).toBe("ok");
		expect(codeOf(() => checkDistinctLines(undefined))).toBe("ok");
	});
});

describe("errors", () => {
	it("count against a callee's health only timeouts, retryable faults and unreachable databases, not an action not registered there", () => {
		const cases: [string, unknown, boolean][] = [
			["timeout", new (Errors.RequestTimeoutError as any)("a.b", "n1"), true],
			["bulkhead full", new (Errors.QueueIsFullError as any)("a.b", "n1", 1, 1), true],
			["dependency unavailable", new DependencyUnavailableError("down"), true],
			["database refused", Object.assign(new Error("ECONNREFUSED"), { name: "SequelizeConnectionRefusedError" }), true],
			["pool exhausted", Object.assign(new Error("timeout"), { name: "SequelizeConnectionAcquireTimeoutError" }), true],
			["validation", new Errors.ValidationError("bad", "VALIDATION_ERROR", []), false],
			["our 422", new UnprocessableError("bad"), false],
			["a 404", new Errors.MoleculerClientError("no", 404, "NOT_FOUND"), false],
			["a bad request", Object.assign(new Error("x"), { type: "BAD_REQUEST", code: 500 }), false],
			["a plain 500 (a bug)", new Errors.MoleculerError("boom", 500), false],
			["a TypeError", new TypeError("x is undefined"), false],
			// No handler ran: a node still starting its services, or no node for the action.
			["not found on a starting node", new Errors.ServiceNotFoundError({ action: "warehouse.reserve", nodeID: "inventory-1" }), false],
			["no available node", new Errors.ServiceNotAvailableError({ action: "warehouse.reserve" }), false],
			["a database error from a value", Object.assign(new Error("value out of range"), { name: "SequelizeDatabaseError" }), false],
		];
		expect(cases.map(([what, err]) => [what, countsAgainstHealth(err)])).toEqual(cases.map(([what, , counts]) => [what, counts]));
	});

	it("retry only what is retryable, never a timeout and never a client error", () => {
		expect(isSafeToRetry(new Errors.ServiceNotAvailableError({ action: "a.b" }))).toBe(true);
		expect(isSafeToRetry(new (Errors.RequestTimeoutError as any)("a.b", "n1"))).toBe(false);
		expect(isSafeToRetry(new (Errors.QueueIsFullError as any)("a.b", "n1", 1, 1))).toBe(true);
		expect(isSafeToRetry(new UnprocessableError("bad"))).toBe(false);
		expect(isSafeToRetry(new Errors.MoleculerError("boom", 500))).toBe(false);
	});

	it("map errors of body-reading libraries to 4xx in UPPER_SNAKE types, never to 500", () => {
		expect(toErrorBody(Object.assign(new Error("incorrect header check"), { code: "Z_DATA_ERROR", errno: -3 }))).toMatchObject({ code: 400, type: "INVALID_CONTENT_ENCODING" });
		expect(toErrorBody(Object.assign(new Error("x"), { status: 415, type: "charset.unsupported" }))).toMatchObject({ code: 415, type: "UNSUPPORTED_CHARSET" });
		expect(toErrorBody(Object.assign(new Error("x"), { status: 400, type: "entity.parse.failed" }))).toMatchObject({ code: 400, type: "INVALID_JSON" });
		expect(toErrorBody(Object.assign(new Error("x"), { code: 409, type: "some.thing-else" }))).toMatchObject({ code: 409, type: "SOME_THING_ELSE" });
		expect(toErrorBody(Object.assign(new Error("x"), { code: 429, type: "RATE_LIMITED", data: { retryAfter: 3 } }))).toEqual({ name: "RateLimitError", message: "x", code: 429, type: "RATE_LIMITED" });
		expect(upperSnake("charset.unsupported")).toBe("CHARSET_UNSUPPORTED");
	});
});

describe("the contract's numbers", () => {
	it("have an upper bound in every public action, but for the paging that clamps", () => {
		useTestEnv();
		const { availableServices, loadServiceSchema } = require("../../../services") as typeof import("../../../services");
		const unbounded: string[] = [];
		const walk = (where: string, rule: any): void => {
			if (Array.isArray(rule)) return rule.forEach(r => walk(where, r));
			const r = typeof rule === "string" ? Object.fromEntries(rule.split("|").map((m, i) => (i === 0 ? ["type", m] : [m.split(":")[0], m.split(":")[1] ?? true]))) : rule;
			if (r?.type === "number" && r.max === undefined && r.equal === undefined) unbounded.push(where);
			if (r?.type === "object") for (const [k, v] of Object.entries(r.props ?? r.properties ?? {})) walk(`${where}.${k}`, v);
			if (r?.type === "array" && r.items) walk(`${where}[]`, r.items);
			if (r?.type === "record" && r.value) walk(`${where}{}`, r.value);
		};
		for (const name of availableServices()) {
			for (const [action, def] of Object.entries<any>(loadServiceSchema(name).actions ?? {})) {
				if (!def?.auth || !def.params) continue;
				for (const [param, rule] of Object.entries(def.params)) if (param !== "page" && param !== "pageSize") walk(`${name}.${action}:${param}`, rule);
			}
		}
		expect(unbounded).toEqual([]);
	});
});
