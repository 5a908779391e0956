/**
 * Test-only fault switch. Inert unless `TEST_FAULTS` names a point, e.g.
 * `TEST_FAULTS=kill:saga.checkout.after:payments.authorize`: the process then dies at that point
 * as if the machine had lost power (SIGKILL, no clean-up); `fail:<point>` throws there instead.
 *
 * `TEST_FAULTS_FILE=/path` arms points from a file instead (same format), read at every point, so
 * a running node is armed and disarmed without restarting it (the crash-recovery tests walk
 * through many points on one cluster this way).
 */
import { readFileSync } from "node:fs";
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
