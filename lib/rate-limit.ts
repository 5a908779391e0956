/**
 * Fixed-window request counters per key, held by this gateway node. With several gateway
 * replicas each counts on its own, so the effective limit is the limit times the replicas.
 */
import { createHash } from "node:crypto";

export interface RateDecision {
	allowed: boolean;
	limit: number;
	remaining: number;
	/** Seconds until the window resets. */
	resetInS: number;
}

export class FixedWindowLimiter {
	private readonly windows = new Map<string, { count: number; resetAt: number }>();
	private lastSweep = 0;

	constructor(
		private readonly limit: number,
		private readonly windowMs: number,
		private readonly now: () => number = Date.now,
	) {}

	hit(key: string): RateDecision {
		const now = this.now();
		this.sweep(now);
		let w = this.windows.get(key);
		if (!w || w.resetAt <= now) {
			w = { count: 0, resetAt: now + this.windowMs };
			this.windows.set(key, w);
		}
		w.count++;
		return {
			allowed: w.count <= this.limit,
			limit: this.limit,
			remaining: Math.max(0, this.limit - w.count),
			resetInS: Math.max(1, Math.ceil((w.resetAt - now) / 1000)),
		};
	}

	/** Forget expired windows once per window so memory stays bounded by active keys. */
	private sweep(now: number): void {
		if (now - this.lastSweep < this.windowMs) return;
		this.lastSweep = now;
		for (const [k, w] of this.windows) if (w.resetAt <= now) this.windows.delete(k);
	}
}

/**
 * Which bucket of the strict (credential) limiter a request of an auth action falls into. Never
 * the signed-in user: a token the caller holds must not move a blocked address to a fresh bucket
 * (issue 9). Login and register count per client address, before their body is even read, so
 * unreadable bodies count too; refresh counts per refresh token (a household behind one address
 * refreshes many sessions; guessing a 256-bit token is hopeless anyway). Failed logins are also
 * throttled per account, in the auth service (lib/identity/login-throttle.ts).
 */
export function authBucket(action: string, address: string, params?: { refreshToken?: unknown }): string | undefined {
	switch (action) {
		case "auth.login":
			return `login:ip:${address}`;
		case "auth.register":
			return `register:ip:${address}`;
		case "auth.refresh":
			return typeof params?.refreshToken === "string" ? `refresh:token:${createHash("sha256").update(params.refreshToken).digest("base64url")}` : undefined;
		default:
			return undefined;
	}
}

/** The general limiter's bucket: the signed-in user, else the client address. */
export function generalBucket(userId: string | undefined, address: string): string {
	return userId ? `all:user:${userId}` : `all:ip:${address}`;
}
