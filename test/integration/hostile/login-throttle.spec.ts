/**
 * Issue 9, item 9: credential throttling. Failed logins are throttled per account with a growing
 * wait (whatever addresses they come from) that a stranger cannot turn into a long lockout of the
 * owner; login and register are limited per client address — the right-most address our trusted
 * proxy reports, never a client-written one, and never moved by a Bearer token; refresh per token.
 * On SQLite and on PostgreSQL in cluster form.
 */
import { gzipSync } from "node:zlib";
import { LOGIN_THROTTLE } from "../../../lib/identity/login-throttle";
import { type Platform, errorShape, register, startPlatform } from "./support";

jest.setTimeout(180_000);

const PER_ADDRESS = 12;

describe.each(["SQLite", "PostgreSQL"] as const)("credential throttling on %s", db => {
	let platform: Platform;
	let send: Platform["send"];
	const tag = db.toLowerCase();
	const login = (email: string, password: string, from: string, token?: string) => send("POST", "/auth/login", { from, token, body: { email, password } });

	beforeAll(async () => {
		// Long waits, so that no wait can run out while a test looks at it (the defaults are 1 s and 5 min).
		platform = await startPlatform(db, { AUTH_RATE_LIMIT_MAX: String(PER_ADDRESS), LOGIN_THROTTLE_BASE_MS: "60000", LOGIN_THROTTLE_MAX_MS: "120000" });
		send = platform.send;
	});

	afterAll(async () => {
		await platform?.stop();
	});

	it("refuses the right password after 27 wrong ones from three addresses: 429 with Retry-After, at most the cap", async () => {
		const email = `victim-${tag}@example.com`;
		await register(send, email, "victim-password-1", "192.0.2.10");
		const answers: number[] = [];
		for (let i = 0; i < 27; i++) answers.push((await login(email, `guess-${i}-password`, `198.51.100.${(i % 3) + 1}`)).status);
		expect(answers.slice(0, LOGIN_THROTTLE.FREE_FAILURES + 1)).toEqual([...Array(LOGIN_THROTTLE.FREE_FAILURES).fill(401), 429]);
		expect(answers.slice(LOGIN_THROTTLE.FREE_FAILURES).every(s => s === 429 || s === 401)).toBe(true);
		const right = await login(email, "victim-password-1", "198.51.100.4");
		expect([right.status, right.body]).toEqual([429, errorShape(429, "LOGIN_THROTTLED")]);
		const wait = Number(right.headers["retry-after"]);
		expect(wait).toBeGreaterThanOrEqual(1);
		expect(wait).toBeLessThanOrEqual(120);
	});

	it("still lets the owner in from an address where they signed in before, while a stranger keeps guessing elsewhere", async () => {
		const email = `owner-${tag}@example.com`;
		await register(send, email, "owner-password-12", "192.0.2.20");
		const stranger = Promise.all(Array.from({ length: 10 }, (_, i) => login(email, `nope-${i}-password`, `203.0.113.${i + 1}`)));
		const owner = await login(email, "owner-password-12", "192.0.2.20");
		const strangerStatuses = (await stranger).map(r => r.status);
		expect(owner.status).toBe(200);
		expect(strangerStatuses).toContain(429);
		expect((await login(email, "owner-password-12", "192.0.2.20")).status).toBe(200);
		expect((await login(email, "owner-password-12", "203.0.113.99")).status).toBe(429);
	});

	it("counts parallel guesses one by one: no more than the free ones are ever checked", async () => {
		const email = `parallel-${tag}@example.com`;
		await register(send, email, "parallel-password-1", "192.0.2.30");
		const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => login(email, `p-${i}-password`, `198.18.0.${(i % 4) + 1}`)));
		const statuses = answers.map(a => a.status).sort();
		expect(statuses.filter(s => s === 401)).toHaveLength(LOGIN_THROTTLE.FREE_FAILURES);
		expect(statuses.filter(s => s === 429)).toHaveLength(20 - LOGIN_THROTTLE.FREE_FAILURES);
	});

	it("throttles unknown accounts exactly like real ones", async () => {
		const statuses: number[] = [];
		for (let i = 0; i < LOGIN_THROTTLE.FREE_FAILURES + 2; i++) statuses.push((await login(`nobody-${tag}@example.com`, "whatever-password", `198.18.1.${i}`)).status);
		expect(statuses).toEqual([...Array(LOGIN_THROTTLE.FREE_FAILURES).fill(401), 429, 429]);
	});

	it("limits logins per address, and a valid Bearer token does not move a blocked address to a fresh bucket", async () => {
		const { token } = await register(send, `holder-${tag}@example.com`, "holder-password-1", "192.0.2.40");
		const from = "198.18.2.1";
		const statuses: number[] = [];
		for (let i = 0; i <= PER_ADDRESS; i++) statuses.push((await login(`spray-${i}-${tag}@example.com`, "spray-password", from)).status);
		expect(statuses).toEqual([...Array(PER_ADDRESS).fill(401), 429]);
		const withToken = await login(`spray-x-${tag}@example.com`, "spray-password", from, token);
		expect([withToken.status, withToken.body]).toEqual([429, errorShape(429, "RATE_LIMITED")]);
		expect(Number(withToken.headers["retry-after"])).toBeGreaterThan(0);
	});

	it("takes the client address from the right-most hop the trusted proxy wrote, never from the client's own entry", async () => {
		const blocked = "198.18.2.1"; // blocked by the test before
		const spoofed = await send("POST", "/auth/login", { headers: { "x-forwarded-for": `10.9.9.9, ${blocked}` }, body: { email: "a@example.com", password: "x-password" } });
		expect(spoofed.status).toBe(429);
		const other = await send("POST", "/auth/login", { headers: { "x-forwarded-for": `${blocked}, 198.18.2.2` }, body: { email: "a@example.com", password: "x-password" } });
		expect(other.status).toBe(401);
	});

	it("counts unreadable bodies against the login limit, before the body is read", async () => {
		const from = "198.18.3.1";
		for (let i = 0; i < PER_ADDRESS; i++) {
			const r = await send("POST", "/auth/login", { from, headers: { "content-encoding": "gzip" }, body: "not gzip at all" });
			expect(r.status).toBe(400);
		}
		const good = await send("POST", "/auth/login", { from, headers: { "content-encoding": "gzip" }, body: gzipSync(JSON.stringify({ email: "a@example.com", password: "x-password" })) });
		expect([good.status, good.body.type]).toEqual([429, "RATE_LIMITED"]);
	});

	it("limits registrations per address", async () => {
		const from = "198.18.4.1";
		const statuses: number[] = [];
		for (let i = 0; i <= PER_ADDRESS; i++) statuses.push((await send("POST", "/auth/register", { from, body: { email: `many-${i}-${tag}@example.com`, password: "many-password-1", firstName: "M", lastName: "Any" } })).status);
		expect(statuses).toEqual([...Array(PER_ADDRESS).fill(201), 429]);
		expect((await send("POST", "/auth/register", { from: "198.18.4.2", body: { email: `other-${tag}@example.com`, password: "many-password-1", firstName: "O", lastName: "Ther" } })).status).toBe(201);
	});

	it("limits refresh per token, not per address: a household refreshes many sessions, one token is retried only so often", async () => {
		const from = "198.18.5.1";
		const sessions: string[] = [];
		for (let i = 0; i < PER_ADDRESS + 3; i++) {
			const r = await send("POST", "/auth/login", { from: `198.18.6.${i + 1}`, body: { email: `holder-${tag}@example.com`, password: "holder-password-1" } });
			expect(r.status).toBe(200);
			sessions.push(r.body.refreshToken);
		}
		for (const refreshToken of sessions) expect((await send("POST", "/auth/refresh", { from, body: { refreshToken } })).status).toBe(200);
		const statuses: number[] = [];
		for (let i = 0; i <= PER_ADDRESS; i++) statuses.push((await send("POST", "/auth/refresh", { from: `198.18.7.${i + 1}`, body: { refreshToken: "not-a-real-token" } })).status);
		expect(statuses).toEqual([...Array(PER_ADDRESS).fill(401), 429]);
	});
});
