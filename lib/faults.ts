/**
 * Test-only fault switch. Inert unless `TEST_FAULTS` names a point, e.g.
 * `TEST_FAULTS=kill:saga.checkout.after:payments.authorize`: the process then dies at that point
 * as if the machine had lost power (SIGKILL, no clean-up).
 */
import { config } from "../config";

export function faultPoint(point: string): void {
	const faults = config().TEST_FAULTS;
	if (!faults) return;
	for (const f of faults.split(",")) {
		if (f === `kill:${point}`) process.kill(process.pid, "SIGKILL");
		if (f === `fail:${point}`) throw new Error(`Injected fault at ${point}`);
	}
}
