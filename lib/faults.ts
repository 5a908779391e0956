/**
 * Test-only fault switch. Inert unless `TEST_FAULTS` names a point, e.g.
 * `TEST_FAULTS=kill:saga.checkout.after:payments.authorize`: the process then dies at that point
 * as if the machine had lost power (SIGKILL, no clean-up); `fail:<point>` throws there instead.
 *
 * `TEST_FAULTS_FILE=/path` arms points from a file instead (same format), read at every point, so
 * a running node is armed and disarmed without restarting it (the crash-recovery tests walk
 * through many points on one cluster this way).
 *
 * `hang:<action>` (e.g. `hang:warehouse.reserve`, or `hang:*` for every action) holds each call of
 * that action on this node, unanswered, until the point is disarmed; then the handler runs, late
 * (FaultHangMiddleware). The node keeps its heartbeats: a handler stuck on a lock, not a dead node.
 */
import type { Context, Middleware } from "moleculer";
import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { config } from "../config";

function armed(): string {
	const c = config();
	if (!c.TEST_FAULTS_FILE) return c.TEST_FAULTS;
	try {
		return `${c.TEST_FAULTS},${readFileSync(c.TEST_FAULTS_FILE, "utf8").trim()}`;
	} catch {
		// No file yet: nothing armed.
		return c.TEST_FAULTS;
	}
}

export function faultPoint(point: string): void {
	const c = config();
	if (!c.TEST_FAULTS && !c.TEST_FAULTS_FILE) return;
	for (const f of armed().split(",")) {
		if (f === `kill:${point}`) process.kill(process.pid, "SIGKILL");
		if (f === `fail:${point}`) throw new Error(`Injected fault at ${point}`);
	}
}

/** Whether `hang:<action>` or `hang:*` is armed now. */
function hangs(action: string): boolean {
	return armed()
		.split(",")
		.some(f => f === `hang:${action}` || f === "hang:*");
}

/**
 * Test-only broker middleware for `hang:` points, in the chain only when TEST_FAULTS or
 * TEST_FAULTS_FILE is set (moleculer.config.ts). A held call is re-checked every 100 ms; the
 * caller sees only silence (its own timeout), as with a replica stuck on a lock.
 */
export const FaultHangMiddleware: Middleware = {
	name: "FaultHang",
	localAction(handler: (ctx: Context) => Promise<unknown>, action: { name: string }) {
		return async (ctx: Context) => {
			while (hangs(action.name)) await sleep(100);
			return handler(ctx);
		};
	},
} as Middleware;
