/**
 * Read caching with Moleculer's built-in cacher (issue 10; docs/OPERATIONS.md "Caching and
 * revocation").
 *
 * - Which store: `CACHER` — unset: an in-memory LRU per process (Moleculer's `MemoryLRU`; the
 *   embedded default, and each node of a cluster without Redis); `redis://host:port[/db]`: one
 *   Redis shared by every node (Moleculer's `Redis` cacher over `ioredis`); `off`: no cache.
 * - What: actions that declare `cache: { ttl, byRole? }` (catalog list/get/categories, search,
 *   reviews.summary, warehouse.availability). The key is the action name, every parameter (so a
 *   refused parameter never shares a key with an accepted one) and, with `byRole`, the caller's
 *   kind (`typ`), for answers that differ for admins.
 * - Where: Moleculer caches on the node that runs the action; `RemoteCacheMiddleware` applies the
 *   same cacher on the calling side too, so a gateway answers a cached read without a hop. With
 *   Redis, each process keeps what it read for at most LOCAL_TIER_TTL_MS in memory in front of it.
 * - Invalidation, driven by the domain events (`INVALIDATES`): the node that commits a change
 *   cleans right after the commit (outbox mixin), and every consumer that applies the event cleans
 *   after its transaction (consumer mixin); each clean is broadcast to every node (`cache.invalidate`),
 *   so per-process stores follow within the broadcast's delivery. A node that reconnects to the
 *   transporter, or a Redis that comes back, is cleaned whole (broadcasts may have been missed).
 *   The TTL is the backstop (a read that began before a commit and stored its answer after the
 *   last clean lives at most that long); with Redis, a missed broadcast leaves a process's own
 *   tier stale for at most LOCAL_TIER_TTL_MS. A read during which this node cleaned anything (or
 *   heard of a clean) is answered but not stored: it may have read before the change committed,
 *   and would otherwise put the old answer back after the clean (a cart read while it changed).
 * - Not stored either: an answer whose handler set `ctx.meta[UNCACHEABLE_META]` (a product page
 *   degraded by a slow or failing dependency).
 * - Redis down: the cacher counts as disconnected, reads go to the services uncached, and
 *   `/health/ready` lists `cache` under `degraded` (lib/readiness.ts) without turning unready.
 */
import { createHash } from "node:crypto";
import { Cachers, type Context, type Middleware, type ServiceBroker, type ServiceSchema } from "moleculer";
import { addReadinessCheck } from "./readiness";

/** The longest any cached answer lives (s) unless its action says less: the invalidation backstop. */
export const DEFAULT_CACHE_TTL_S = 30;

/** Domain event → the cache key patterns it makes stale (keys are `<action>:[u=<user>|]<params>`; `**` matches anything, dots included). */
export const INVALIDATES: Record<string, string[]> = {
	"catalog.product.created": ["catalog.list:**", "catalog.get:**", "catalog.product:**", "search.**", "cart.get:**"],
	"catalog.product.updated": ["catalog.list:**", "catalog.get:**", "catalog.product:**", "search.**", "cart.get:**"],
	"catalog.product.archived": ["catalog.list:**", "catalog.get:**", "catalog.product:**", "search.**", "cart.get:**"],
	"catalog.category.created": ["catalog.categories**", "catalog.list:**", "catalog.get:**", "search.**"],
	"catalog.category.updated": ["catalog.categories**", "catalog.list:**", "catalog.get:**", "search.**"],
	"catalog.category.deleted": ["catalog.categories**", "catalog.list:**", "catalog.get:**", "search.**"],
	"warehouse.stock.changed": ["warehouse.availability:**", "catalog.get:**", "search.**"],
	"warehouse.warehouse.created": ["warehouse.availability:**", "catalog.get:**", "search.**"],
	"warehouse.warehouse.updated": ["warehouse.availability:**", "catalog.get:**", "search.**"],
	"reviews.review.published": ["reviews.summary:**", "catalog.get:**", "catalog.list:**", "search.**"],
};

/** The Moleculer broadcast carrying an invalidation to every node: `{ events: string[] }`. */
export const INVALIDATE_EVENT = "cache.invalidate";

/** Per-action cache options (serialisable: they travel to callers in the registry). */
export interface ActionCache {
	ttl: number;
	/** The answer depends on the caller's kind (customer, admin): it is part of the key. */
	byRole?: boolean;
	/** The answer is the caller's own (a cart): the user id leads the key, so `forgetUser` can clean one user's answers. */
	byUser?: boolean;
}

/** Keys longer than this are `<action>:<sha256>`. */
const MAX_KEY_LENGTH = 200;

function stable(value: unknown): string {
	if (value === null || typeof value !== "object") return JSON.stringify(value) ?? "u";
	if (Array.isArray(value)) return `[${value.map(stable).join(",")}]`;
	const obj = value as Record<string, unknown>;
	return `{${Object.keys(obj)
		.sort()
		.map(k => `${JSON.stringify(k)}:${stable(obj[k])}`)
		.join(",")}}`;
}

/** `<action>:<every param, sorted>[|<caller kind>]`, hashed when long. */
export function cacheKey(actionName: string, params: unknown, meta: any, opts: ActionCache | undefined): string {
	let body = stable(params ?? {});
	if (opts?.byRole) body += `|${meta?.user?.typ ?? "-"}`;
	if (body.length > MAX_KEY_LENGTH) body = createHash("sha256").update(body).digest("base64url");
	return opts?.byUser ? `${actionName}:u=${meta?.user?.id ?? "-"}|${body}` : `${actionName}:${body}`;
}

/**
 * `ctx.meta[UNCACHEABLE_META] = true`, set by a handler: this answer is not to be stored (a
 * product page that degraded to a null rating or availability because a dependency was slow or
 * failing must not outlive the failure by the TTL). Moleculer merges a remote answer's meta into
 * the caller's context, so the calling side's cache skips it too.
 */
export const UNCACHEABLE_META = "$uncacheable";

class Uncacheable {
	constructor(readonly result: unknown) {}
}

/**
 * Wraps a cacher's Moleculer middleware so an answer whose handler set `UNCACHEABLE_META` is
 * returned without being stored (Moleculer stores whatever resolves; a rejection is never stored,
 * so the answer travels out of the cacher as one and is unwrapped here).
 */
function skippingMiddleware(cacher: { cleans: number }, base: any): any {
	return {
		...base,
		localAction(handler: (ctx: Context<unknown, any>) => Promise<unknown>, action: any) {
			const began = new WeakMap<object, number>();
			const marked = (ctx: Context<unknown, any>) =>
				handler(ctx).then(res => {
					// A clean since this read began (a change committed meanwhile): its answer may predate the change, so it is not stored.
					if (ctx.meta?.[UNCACHEABLE_META] !== true && began.get(ctx) === cacher.cleans) return res;
					delete ctx.meta[UNCACHEABLE_META];
					return Promise.reject(new Uncacheable(res));
				});
			const cached = base.localAction(marked, action);
			if (cached === marked) return handler;
			return (ctx: Context<unknown, any>) => {
				began.set(ctx, cacher.cleans);
				return cached(ctx).catch((err: unknown) => {
					if (!(err instanceof Uncacheable)) throw err;
					ctx.meta[UNCACHEABLE_META] = true;
					return err.result;
				});
			};
		},
	};
}

const MemoryLRUBase = Cachers.MemoryLRU as unknown as new (opts: unknown) => any;
/** Moleculer's MemoryLRU cacher, skipping answers marked `UNCACHEABLE_META`. */
class SkippingMemoryLRUCacher extends MemoryLRUBase {
	/** Cleans so far: a read that saw one happen while it ran is not stored. */
	cleans = 0;

	middleware(): any {
		return skippingMiddleware(this, super.middleware());
	}

	clean(match?: string | string[]): Promise<unknown> {
		this.cleans++;
		return super.clean(match);
	}
}

/** How long a process keeps a Redis answer in its own memory (ms): the bound should an invalidation broadcast be missed. */
export const LOCAL_TIER_TTL_MS = 2000;
const LOCAL_TIER_MAX = 5000;

/**
 * Moleculer's Redis cacher, where a failing Redis means a miss (the service answers), never an
 * error; with a small in-process tier in front (LOCAL_TIER_TTL_MS), so a hot read costs no Redis
 * round trip. The local tier is cleaned with every clean here and on every invalidation broadcast.
 */
const RedisCacherBase = Cachers.Redis as unknown as new (opts: unknown) => any;
class ForgivingRedisCacher extends RedisCacherBase {
	private readonly local = new Map<string, { value: unknown; until: number }>();

	private remember(key: string, value: unknown, ttlS?: number): void {
		if (value === undefined) return;
		const ms = Math.min(LOCAL_TIER_TTL_MS, ttlS ? ttlS * 1000 : LOCAL_TIER_TTL_MS);
		this.local.delete(key);
		this.local.set(key, { value, until: Date.now() + ms });
		if (this.local.size > LOCAL_TIER_MAX) this.local.delete(this.local.keys().next().value!);
	}

	/** Cleans so far, here or by another node's broadcast: a read that saw one happen while it ran is not stored. */
	cleans = 0;

	middleware(): any {
		return skippingMiddleware(this, super.middleware());
	}

	/** Forgets the in-process tier (an invalidation another node already applied to Redis). */
	forgetLocal(): void {
		this.cleans++;
		this.local.clear();
	}

	init(broker: ServiceBroker): void {
		super.init(broker);
		let wasDown = false;
		const client = (this as any).client;
		client.on("close", () => {
			(this as any).connected = false;
			wasDown = true;
		});
		client.on("error", () => {
			wasDown = true;
		});
		client.on("ready", () => {
			// Invalidations were missed while it was away.
			if (wasDown) void this.clean("**").catch(() => undefined);
			wasDown = false;
		});
	}

	get(key: string): Promise<unknown> {
		if ((this as any).connected === false) return Promise.resolve(undefined);
		const hit = this.local.get(key);
		if (hit && hit.until > Date.now()) return Promise.resolve(hit.value);
		return super
			.get(key)
			.then((value: unknown) => {
				this.remember(key, value);
				return value;
			})
			.catch(() => undefined);
	}

	set(key: string, data: unknown, ttl?: number): Promise<unknown> {
		if ((this as any).connected === false) return Promise.resolve();
		this.remember(key, data, ttl);
		return super.set(key, data, ttl).catch(() => undefined);
	}

	clean(match?: string | string[]): Promise<unknown> {
		this.cleans++;
		this.local.clear();
		if ((this as any).connected === false) return Promise.resolve();
		// Again once Redis is clean: a read between the two may have brought back an old answer.
		return super
			.clean(match)
			.catch(() => undefined)
			.finally(() => this.local.clear());
	}
}

/** The broker's `cacher` option for `CACHER` (see the module comment). */
export function cacherFor(setting: string | undefined, namespace: string): unknown {
	const common = {
		ttl: DEFAULT_CACHE_TTL_S,
		keygen: (action: { name: string }, opts: ActionCache, ctx: Context<unknown, any>) => cacheKey(action.name, ctx?.params, ctx?.meta, opts),
	};
	if (setting === "off") return undefined;
	if (setting?.startsWith("redis://") || setting?.startsWith("rediss://")) {
		const url = new URL(setting);
		return new ForgivingRedisCacher({
			...common,
			prefix: `MC-${namespace || "default"}`,
			// Moleculer's lock needs redlock; reads are cheap enough to compute twice.
			redlock: false,
			redis: {
				host: url.hostname,
				port: Number(url.port || 6379),
				username: url.username ? decodeURIComponent(url.username) : undefined,
				password: url.password ? decodeURIComponent(url.password) : undefined,
				db: Number(url.pathname.slice(1) || 0),
				tls: url.protocol === "rediss:" ? {} : undefined,
				// Fail fast instead of queueing while Redis is away: the read goes to the service.
				enableOfflineQueue: false,
				maxRetriesPerRequest: 0,
				connectTimeout: 2000,
				retryStrategy: (times: number) => Math.min(times * 200, 2000),
			},
		});
	}
	return new SkippingMemoryLRUCacher({ ...common, max: 5000 });
}

const companions = new WeakMap<ServiceBroker, SkippingMemoryLRUCacher>();

/**
 * The store for answers a process must be able to drop at once on a clean, whoever else shares
 * the cache: the broker's own when it is in memory; beside a shared Redis, a MemoryLRU of this
 * process (Moleculer's), cleaned by every clean here and every invalidation broadcast — so it has
 * no window in which another node can put an old answer back (Redis has: a read that began before
 * a commit may store after the committing node cleaned Redis). Used for the products that price a
 * checkout (lib/catalog/products-by-id.ts). Undefined without a cacher.
 */
export interface ProcessCache {
	get(key: string): Promise<unknown>;
	set(key: string, data: unknown, ttl?: number): Promise<unknown>;
	/** Cleans so far: a read that saw one happen while it ran is not stored. */
	cleans: number;
}

export function processCacheFor(broker: ServiceBroker): ProcessCache | undefined {
	const cacher = broker.cacher as any;
	if (!cacher) return undefined;
	if (!(cacher instanceof ForgivingRedisCacher)) return cacher;
	let own = companions.get(broker);
	if (!own) {
		own = new SkippingMemoryLRUCacher({ ttl: DEFAULT_CACHE_TTL_S, max: 5000 });
		own.init(broker);
		companions.set(broker, own);
	}
	return own as any;
}

/** The key patterns the given domain events make stale, with any given beside them, each once. */
function patternsFor(events: readonly string[], extra: readonly string[] = []): string[] {
	return [...new Set([...events.flatMap(e => INVALIDATES[e] ?? []), ...extra])];
}

/** Cleans this node's cache for the given domain events (Redis: the shared store). */
export function cleanFor(broker: ServiceBroker, events: readonly string[], extra: readonly string[] = []): Promise<void> {
	const cacher = broker.cacher as any;
	const patterns = patternsFor(events, extra);
	if (!cacher || !patterns.length) return Promise.resolve();
	// The per-product store beside a shared Redis (processCacheFor) is this process's own: cleaned here, at once.
	const own = companions.get(broker);
	if (own) void own.clean(patterns);
	return Promise.resolve(cacher.clean(patterns)).then(
		() => undefined,
		() => undefined,
	);
}

/** At most one invalidation broadcast per node in this many ms; what comes meanwhile goes in the next (ms). */
export const BROADCAST_COALESCE_MS = 50;

interface Outgoing {
	events: Set<string>;
	/** The cleans here that must finish before the others hear of them (a shared store first). */
	cleaned: Promise<void>[];
	lastSent: number;
	timer?: NodeJS.Timeout;
}
const outgoing = new WeakMap<ServiceBroker, Outgoing>();

/**
 * Tells every other node to clean for domain events (a Moleculer broadcast, `cache.invalidate`), after the cleans
 * here have finished. The first one after a quiet spell goes at once; under load, what arrives
 * within BROADCAST_COALESCE_MS of the last one goes together in one broadcast at the end of that
 * window. A checkout otherwise cost two broadcasts, each handled by every node (ten deliveries);
 * the delay stays far inside the 2 s staleness bound (docs/OPERATIONS.md).
 */
function broadcastClean(broker: ServiceBroker, cleaned: Promise<void>, events: readonly string[]): void {
	if (!(broker as any).transit) return;
	let o = outgoing.get(broker);
	if (!o) outgoing.set(broker, (o = { events: new Set(), cleaned: [], lastSent: 0 }));
	for (const e of events) o.events.add(e);
	o.cleaned.push(cleaned);
	if (o.timer) return;
	const out = o;
	const send = () => {
		out.timer = undefined;
		out.lastSent = Date.now();
		const payload = { events: [...out.events] };
		const waits = out.cleaned;
		out.events = new Set();
		out.cleaned = [];
		void Promise.all(waits).then(() => broker.broadcast(INVALIDATE_EVENT, payload).catch(() => undefined));
	};
	const wait = out.lastSent + BROADCAST_COALESCE_MS - Date.now();
	if (wait <= 0) send();
	else (out.timer = setTimeout(send, wait)).unref();
}

/**
 * After a change's commit or an event's application: cleans here at once and tells every other
 * node (a coalesced Moleculer broadcast; per-process stores clean on it).
 */
export function invalidateFor(broker: ServiceBroker, events: readonly string[]): void {
	if (!broker.cacher) return;
	const relevant = events.filter(e => INVALIDATES[e]);
	if (!relevant.length) return;
	const cleaned = cleanFor(broker, relevant);
	const busy = relevant.filter(e => COALESCED.has(e));
	const urgent = relevant.filter(e => !COALESCED.has(e));
	if (urgent.length && (broker as any).transit) {
		// Published before the change's answer leaves this node, so a client that acts on that answer
		// (buys right after an archive) reaches nodes that have cleaned their own memory. With a shared
		// Redis, once more when its clean has finished: a process tier that read the old answer back
		// from Redis in between drops it then.
		const send = () => void broker.broadcast(INVALIDATE_EVENT, { events: urgent }).catch(() => undefined);
		send();
		if (isShared(broker)) void cleaned.then(send);
	}
	// The others hear of it once the shared store is clean, so none reads the old answer back into its own tier.
	if (busy.length) broadcastClean(broker, cleaned, busy);
}

/**
 * Events that customers' traffic makes by the hundred per second (every checkout changes stock;
 * reviews): their broadcasts are coalesced. Everything else — an operator's change to a product, a
 * category, a warehouse — is broadcast at once.
 */
const COALESCED = new Set(["warehouse.stock.changed", "reviews.review.published"]);

/**
 * After a change of one user's own data (their cart) has committed: cleans the answers of `action`
 * for that user here and on every node, as `invalidateFor` does for domain events.
 */
export function forgetUser(broker: ServiceBroker, action: string, userId: string): Promise<void> {
	if (!broker.cacher) return Promise.resolve();
	const patterns = [`${action}:u=${userId}|**`];
	// Not coalesced: the buyer reads their cart right after changing it, on any gateway.
	return cleanFor(broker, [], patterns).then(() => {
		if ((broker as any).transit) void broker.broadcast(INVALIDATE_EVENT, { events: [], patterns }).catch(() => undefined);
	});
}

const isShared = (broker: ServiceBroker) => broker.cacher instanceof ForgivingRedisCacher;

/** `$cache`: on every node with a cacher; follows the invalidation broadcasts and reconnections. */
const CacheService: ServiceSchema = {
	name: "$cache",
	events: {
		[INVALIDATE_EVENT](this: any, ctx: Context<{ events?: string[]; patterns?: string[] }>) {
			if (!Array.isArray(ctx.params?.events) || ctx.nodeID === this.broker.nodeID) return;
			const patterns = Array.isArray(ctx.params.patterns) ? ctx.params.patterns.filter(p => typeof p === "string") : [];
			// A shared store was cleaned by the sender: only this process's tier in front of it (and its own
			// per-product store) is left; a per-process store is cleaned here.
			if (isShared(this.broker)) {
				(this.broker.cacher as unknown as ForgivingRedisCacher).forgetLocal();
				const stale = patternsFor(ctx.params.events, patterns);
				if (stale.length) void companions.get(this.broker)?.clean(stale);
			} else void cleanFor(this.broker, ctx.params.events, patterns);
		},
		"$transporter.connected"(this: any, ctx: Context<{ wasReconnect?: boolean }>) {
			if (!ctx.params?.wasReconnect) return;
			if (isShared(this.broker)) {
				(this.broker.cacher as unknown as ForgivingRedisCacher).forgetLocal();
				void companions.get(this.broker)?.clean("**");
			} else void (this.broker.cacher as any)?.clean("**");
		},
	},
};

/**
 * Broker middleware: the `$cache` service and the readiness line on every node with a cacher, and
 * the cacher applied on the calling side of remote actions that declare `cache` (a gateway answers
 * cached reads without a hop). Nothing at all without a cacher.
 */
export const RemoteCacheMiddleware: Middleware = {
	name: "RemoteCache",
	created(broker: ServiceBroker) {
		if (!broker.cacher) return;
		broker.createService(CacheService);
		addReadinessCheck(broker, "cache", () => ((broker.cacher as any).connected === false ? { degraded: "cache" } : undefined));
	},
	remoteAction(this: any, next: (ctx: Context) => Promise<unknown>, action: any) {
		const cacher = action?.service?.broker?.cacher ?? this?.cacher;
		if (!action?.cache || !cacher) return next;
		return (cacher as any).middleware().localAction(next, action);
	},
} as unknown as Middleware;
