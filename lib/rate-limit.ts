/**
 * Fixed-window request counters per key, held by this gateway node. With several gateway
 * replicas each counts on its own, so the effective limit is the limit times the replicas.
 */
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
