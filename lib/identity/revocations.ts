/**
 * The gateway's knowledge of revoked sessions, so that an authenticated request costs no call to
 * `auth` (issue 10). Every gateway replica keeps the set of sessions revoked within the lifetime
 * of an access token (ACCESS_TOKEN_TTL_S + the 5 s clock tolerance of lib/tokens.ts: older ones
 * can no longer be presented with a valid token), fed two ways:
 *
 * - `auth.sessions.revoked`, broadcast by `auth` right after it revokes a session (logout, refresh
 *   token reuse): every replica knows within the broadcast's delivery (milliseconds);
 * - `auth.revokedSince`, asked every SYNC_EVERY_MS: a missed broadcast (a replica that was
 *   disconnected, a restarted one) is caught at the next look.
 *
 * The bound (docs/OPERATIONS.md "Caching and revocation"): a revoked session is refused by every
 * replica at most REVOCATION_BOUND_MS after its revocation. While the last successful look is
 * older than that bound (auth unreachable, or not started yet), the replica asks `auth.sessionActive`
 * per request again, as before, so the guarantee holds whatever the network does.
 */
import type { Context, ServiceBroker } from "moleculer";

/** The Moleculer broadcast `auth` sends after revoking sessions: `{ sids: string[], revokedAt: ms }`. */
export const SESSIONS_REVOKED_EVENT = "auth.sessions.revoked";

/** Most sessions `auth.revokedSince` answers at once (oldest first): a full page means ask again from its last. */
export const REVOKED_PAGE = 5000;
/** How often a replica asks `auth` for the sessions revoked since its last look (ms). */
export const SYNC_EVERY_MS = 1000;
/** Longest a revoked session may still be used on any replica (ms): the stated bound. */
export const REVOCATION_BOUND_MS = 3000;
/** Sessions remembered as active per replica, at most (the oldest is asked about again). */
const KNOWN_MAX = 100_000;
/** Each look starts this far before the previous answer's time, against clock skew between `auth` replicas (ms). */
const OVERLAP_MS = 2000;

export class RevocationList {
	/** sid → revocation time (ms). */
	private readonly revoked = new Map<string, number>();
	/** Sessions `auth` said were active, once each per replica (sid → when asked, ms), oldest first. */
	private readonly known = new Map<string, number>();
	private cursor = 0;
	private lastSyncOkAt = 0;
	private timer: NodeJS.Timeout | undefined;
	private syncing = false;

	/** @param keepMs how long a revocation matters: the access token lifetime plus clock tolerance. */
	constructor(
		private readonly broker: ServiceBroker,
		private readonly keepMs: number,
		private readonly now: () => number = Date.now,
	) {}

	start(): void {
		this.cursor = this.now() - this.keepMs;
		void this.sync();
		this.timer = setInterval(() => void this.sync(), SYNC_EVERY_MS);
		this.timer.unref();
	}

	stop(): void {
		clearInterval(this.timer);
	}

	/** Records revocations (from the broadcast or a look). */
	add(sids: readonly string[], revokedAt: number): void {
		for (const sid of sids) {
			if (typeof sid !== "string") continue;
			this.revoked.set(sid, revokedAt);
			this.known.delete(sid);
		}
	}

	/** True when the last successful look at `auth` is recent enough for the bound to hold without asking. */
	isFresh(): boolean {
		return this.now() - this.lastSyncOkAt <= REVOCATION_BOUND_MS - SYNC_EVERY_MS;
	}

	/**
	 * Whether the session may be used: false when it is known revoked; true for a session `auth`
	 * confirmed on this replica before, while the list is fresh; else `auth.sessionActive`'s
	 * answer, remembered when true (so a session that never existed is refused, and each session
	 * costs one call per replica; errors propagate: 503 when auth is unreachable, as before).
	 */
	async isActive(ctx: Context, sid: string): Promise<boolean> {
		if (this.revoked.has(sid)) return false;
		if (this.known.has(sid) && this.isFresh()) return true;
		const asked = this.now();
		const active: boolean = await ctx.call("auth.sessionActive", { sid });
		// A revocation that arrived meanwhile wins.
		if (active && !this.revoked.has(sid)) {
			this.known.set(sid, asked);
			if (this.known.size > KNOWN_MAX) this.known.delete(this.known.keys().next().value!);
		}
		return active;
	}

	/** One look at `auth.revokedSince`; quiet when auth is not in the cluster (no call, no error). */
	async sync(): Promise<void> {
		if (this.syncing || !this.broker.registry.hasService("auth", undefined as any)) return;
		this.syncing = true;
		const startedAt = this.now();
		try {
			let since = Math.max(0, this.cursor);
			for (;;) {
				const answer: { items: { sid: string; revokedAt: number }[]; now: number } = await this.broker.call("auth.revokedSince", { since }, { timeout: REVOCATION_BOUND_MS - SYNC_EVERY_MS, retries: 0 });
				for (const r of answer.items) this.add([r.sid], r.revokedAt);
				if (answer.items.length < REVOKED_PAGE) {
					this.cursor = answer.now - OVERLAP_MS;
					break;
				}
				// A full page: there may be more after it (oldest first); the next page starts at its last (a repeat is harmless).
				const last = answer.items[answer.items.length - 1].revokedAt;
				since = last > since ? last : since + 1;
			}
			this.lastSyncOkAt = startedAt;
			this.prune();
		} catch (err) {
			this.broker.logger.debug(`Revocation list: auth.revokedSince failed (${(err as Error).message}); asking auth per request until it answers`);
		} finally {
			this.syncing = false;
		}
	}

	private prune(): void {
		const oldest = this.now() - this.keepMs;
		for (const [sid, at] of this.revoked) if (at < oldest) this.revoked.delete(sid);
		// Asked again after a token's lifetime: a session also ends by expiring.
		for (const [sid, at] of this.known) {
			if (at >= oldest) break;
			this.known.delete(sid);
		}
	}

	get size(): number {
		return this.revoked.size;
	}
}
