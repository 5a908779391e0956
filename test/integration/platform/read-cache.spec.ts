/**
 * The read cache (lib/cache.ts) between two brokers over NATS: answered on the calling side,
 * keyed by every parameter and the caller's kind, cleaned on every node by a domain event's
 * invalidation, with an in-memory store per process and with one shared Redis.
 */
import { ServiceBroker } from "moleculer";
import { RemoteCacheMiddleware, UNCACHEABLE_META, cacheKey, cacherFor, forgetUser, invalidateFor } from "../../../lib/cache";

const NATS = process.env.NATS_URL ?? "nats://127.0.0.1:4222";
const REDIS = process.env.REDIS_URL ?? "redis://127.0.0.1:6379/7";

describe.each([
	["in-memory per process", undefined],
	["shared Redis", REDIS],
])("read cache, %s", (_label, setting) => {
	const ns = `i10cache${process.pid}${setting ? "r" : "m"}`;
	const mk = (id: string) => new ServiceBroker({ nodeID: id, namespace: ns, logger: false, transporter: NATS as any, cacher: cacherFor(setting, ns) as any, middlewares: [RemoteCacheMiddleware] });
	const gateway = mk("gw");
	const owner = mk("owner");
	let calls = 0;

	beforeAll(async () => {
		owner.createService({
			name: "cart",
			actions: {
				get: {
					cache: { ttl: 10, byUser: true } as any,
					async handler(ctx: any) {
						const n = ++calls;
						if (ctx.params.slowMs) await new Promise(r => setTimeout(r, ctx.params.slowMs));
						return { n };
					},
				},
			},
		});
		owner.createService({
			name: "catalog",
			actions: {
				get: { cache: { ttl: 30, byRole: true } as any, handler: (ctx: any) => ({ n: ++calls, id: ctx.params.id }) },
				getMany: { handler: () => ({ n: ++calls }) },
				degraded: {
					cache: { ttl: 30 } as any,
					handler: (ctx: any) => {
						if (ctx.params.bad) ctx.meta[UNCACHEABLE_META] = true;
						return { n: ++calls };
					},
				},
			},
		});
		await Promise.all([gateway.start(), owner.start()]);
		await gateway.waitForServices(["catalog", "cart"]);
		await (owner.cacher as any).clean("**");
	});
	afterAll(() => Promise.all([gateway.stop(), owner.stop()]));

	it("answers a repeated read from the caller's cache, apart per parameter and caller kind, and never caches an action without `cache`", async () => {
		const first = await gateway.call("catalog.get", { id: "p1" });
		expect(await gateway.call("catalog.get", { id: "p1" })).toEqual(first);
		const admin: any = await gateway.call("catalog.get", { id: "p1" }, { meta: { user: { typ: "admin" } } });
		expect(admin.n).not.toBe((first as any).n);
		const other: any = await gateway.call("catalog.get", { id: "p2" });
		expect(other.id).toBe("p2");
		const a: any = await gateway.call("catalog.getMany", {});
		const b: any = await gateway.call("catalog.getMany", {});
		expect(b.n).toBe(a.n + 1);
	});

	it("stores no answer its handler marked uncacheable, on the calling side nor the owner's", async () => {
		const a: any = await gateway.call("catalog.degraded", { bad: true });
		const b: any = await gateway.call("catalog.degraded", { bad: true });
		expect(b.n).toBe(a.n + 1);
		const c: any = await owner.call("catalog.degraded", { bad: true });
		expect(c.n).toBe(b.n + 1);
		const d: any = await gateway.call("catalog.degraded", { bad: false });
		expect(((await gateway.call("catalog.degraded", { bad: false })) as any).n).toBe(d.n);
	});

	it("does not store a read that began before a clean of its key (read-your-writes of a cart changed meanwhile)", async () => {
		const meta = { user: { id: "cust-rw", typ: "customer" } };
		// A read in flight while the cart changes: it read the old lines before the change committed.
		const slow = gateway.call("cart.get", { slowMs: 300 }, { meta });
		await new Promise(r => setTimeout(r, 50));
		// The change commits; the cart's after hook cleans this customer's answers everywhere, then the change answers.
		await forgetUser(owner, "cart.get", "cust-rw");
		await new Promise(r => setTimeout(r, 50));
		const old: any = await slow;
		// The customer reads again after the change answered: not the old answer.
		const next: any = await gateway.call("cart.get", { slowMs: 300 }, { meta });
		expect(next.n).toBeGreaterThan(old.n);
	});

	it("keys include every parameter, so an extra one never shares an accepted one's answer", () => {
		expect(cacheKey("catalog.list", { brand: "a" }, {}, { ttl: 1 })).not.toBe(cacheKey("catalog.list", { brand: "a", extra: 1 }, {}, { ttl: 1 }));
		expect(cacheKey("catalog.list", { a: 1, b: 2 }, {}, { ttl: 1 })).toBe(cacheKey("catalog.list", { b: 2, a: 1 }, {}, { ttl: 1 }));
	});

	it("cleans every node when the owner commits a change (catalog.product.updated)", async () => {
		const before: any = await gateway.call("catalog.get", { id: "p3" });
		expect(((await gateway.call("catalog.get", { id: "p3" })) as any).n).toBe(before.n);
		invalidateFor(owner, ["catalog.product.updated"]);
		const deadline = Date.now() + 2000;
		let now: any = before;
		while (now.n === before.n && Date.now() < deadline) {
			await new Promise(r => setTimeout(r, 20));
			now = await gateway.call("catalog.get", { id: "p3" });
		}
		expect(now.n).toBeGreaterThan(before.n);
	});
});
