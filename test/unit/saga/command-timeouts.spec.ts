/**
 * The saga calls each step and compensation with the time its callee declares as its action's
 * `timeout` (lib/command-timeouts.ts), so that a timed-out saga call is the callee's fault and
 * counts against its circuit breaker (lib/graceful.ts `notTheCalleesFault`: a call given less than
 * the action's declared time, else the broker's 10 s, does not count). Before, the callees declared
 * nothing and the saga called them with 3–5 s: a hung replica beside a healthy one was never
 * isolated for the saga's calls. This fails as soon as one side changes without the other.
 */
import type { ServiceSchema } from "moleculer";
import { COMMAND_TIMEOUT_MS } from "../../../lib/command-timeouts";
import { cancellation, checkout } from "../../../services/commerce/orders.service";
import PaymentsService from "../../../services/commerce/payments.service";
import FulfillmentService from "../../../services/inventory/fulfillment.service";
import WarehouseService from "../../../services/inventory/warehouse.service";

const schemas: Record<string, ServiceSchema<any, any, any, any>> = { payments: PaymentsService, warehouse: WarehouseService, fulfillment: FulfillmentService };

/** The `timeout` an action's schema declares, or undefined. */
function declared(action: string): number | undefined {
	const [service, name] = action.split(".");
	const def = schemas[service]?.actions?.[name];
	return typeof def === "object" ? (def as { timeout?: number }).timeout : undefined;
}

/** Every remote call of a saga definition: [saga, step, phase, action, timeout]. */
function calls(): [string, string, string, string, number][] {
	return [checkout, cancellation].flatMap(def =>
		def.steps.flatMap(s => [
			[def.name, s.name, "forward", s.action, s.timeout] as [string, string, string, string, number],
			...(s.compensate ? [[def.name, s.name, "compensate", s.compensate.action, s.compensate.timeout] as [string, string, string, string, number]] : []),
		]),
	);
}

test("every saga step and compensation is called with exactly the timeout its callee declares", () => {
	const all = calls();
	expect(all.length).toBe(12);
	expect(all.filter(([, , , action, timeout]) => declared(action) !== timeout)).toEqual([]);
	for (const c of all) expect(c[4]).toBeGreaterThan(0);
});

test("every command in the table is declared by its callee with the table's time, and the saga calls only those", () => {
	for (const [action, ms] of Object.entries(COMMAND_TIMEOUT_MS)) expect([action, declared(action)]).toEqual([action, ms]);
	expect([...new Set(calls().map(c => c[3]))].sort()).toEqual(Object.keys(COMMAND_TIMEOUT_MS).sort());
});

test("the authorization's time leaves room for the slowest provider answer (tok_slow)", () => {
	expect(COMMAND_TIMEOUT_MS["payments.authorize"]).toBeGreaterThan((PaymentsService.settings as { slowTokenMs: number }).slowTokenMs);
});
