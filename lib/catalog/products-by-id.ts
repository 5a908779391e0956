/**
 * Products by id for the command path — checkout pricing (orders), shipping quotes and cart
 * pricing — each product cached on its own in this process's memory (Moleculer's MemoryLRU: the
 * broker's cacher, or beside a shared Redis a store of the process's own, lib/cache.ts
 * `processCacheFor`), so a checkout of products read lately costs no call to catalog at all, and
 * the misses of a multi-line order cost one `catalog.getMany`.
 *
 * - Key: `catalog.product:<id>`; value: what `catalog.getMany` answers for it
 *   (`{ id, sku, name, price: { amount (cents), currency }, status, weightGrams }`), or the
 *   marker GONE for an id catalog does not have.
 * - Staleness: every `catalog.product.*` event cleans `catalog.product:**` (INVALIDATES): at once
 *   on the node that committed the change, and on every other node by the invalidation broadcast,
 *   which for product events is not coalesced and leaves before the change's answer does — so a
 *   checkout placed after a price change or an archive has answered sees it (an adversary's test,
 *   test/e2e/adversary/price-staleness.spec.ts). TTL: the 30 s backstop, should a broadcast be lost.
 * - A read during which this node cleaned anything is answered but not stored (it may predate the
 *   change), as for cached actions.
 * - No cacher (`CACHER=off`): every call goes to catalog.
 *
 * Errors: whatever `catalog.getMany` throws (a 4xx for bad ids, 503 when catalog is down).
 */
import type { CallingOptions, Context } from "moleculer";
import { processCacheFor } from "../cache";

export const PRODUCT_KEY_PREFIX = "catalog.product:";
/** Stands for an id catalog does not have (cached too: a retried bad id costs no call). */
const GONE = { gone: true };

/** The products of `ids` that exist (any order, each once), read through the per-product cache. */
export async function productsById<T extends { id: string }>(ctx: Context, ids: readonly string[], opts?: CallingOptions): Promise<T[]> {
	const unique = [...new Set(ids)];
	const cacher = processCacheFor(ctx.broker);
	if (!cacher || !unique.length) return unique.length ? ctx.call("catalog.getMany", { ids: unique }, opts) : [];
	const cached = await Promise.all(unique.map(id => cacher.get(PRODUCT_KEY_PREFIX + id)));
	const found: T[] = [];
	const missing: string[] = [];
	unique.forEach((id, i) => {
		const hit = cached[i] as T | typeof GONE | null | undefined;
		if (hit === null || hit === undefined) missing.push(id);
		// A copy: the in-process store hands out the object it keeps, which no caller may change.
		else if (!(hit as typeof GONE).gone) found.push(structuredClone(hit as T));
	});
	if (!missing.length) return found;
	const began = cacher.cleans;
	const fetched: T[] = await ctx.call("catalog.getMany", { ids: missing }, opts);
	// A clean while the call ran: what it read may predate a change, so it is not kept.
	if (began === cacher.cleans) {
		const byId = new Map(fetched.map(p => [p.id, p]));
		// Copies kept: the caller may change what it was handed.
		for (const id of missing) void cacher.set(PRODUCT_KEY_PREFIX + id, byId.has(id) ? structuredClone(byId.get(id)) : GONE).catch(() => undefined);
	}
	return found.concat(fetched);
}
