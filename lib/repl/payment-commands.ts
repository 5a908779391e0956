/**
 * REPL commands of the payments reconciler (services/commerce/payments-reconciler.mixin.ts), called
 * as the system user:
 *
 *   reconciliations [--limit N]   repairs made so far, newest first
 *   reconcile [--grace MS]        run a pass now (payments untouched for MS, default the configured grace)
 */
import type { ServiceBroker } from "moleculer";
import { SYSTEM_USER } from "../access";
import { type EventCommand, formatTable } from "./event-commands";

const meta = { user: SYSTEM_USER };

function failed(what: string, err: any): void {
	console.log(`${what} failed: ${err?.message ?? err}${err?.type ? ` (${err.type})` : ""}`);
}

const row = (r: any) => [r.at ?? "", r.action, r.paymentId, r.orderId, r.amount == null ? "" : String(r.amount), r.reason];

export const paymentCommands: EventCommand[] = [
	{
		command: "reconciliations",
		description: "List the payment repairs made by the reconciler (newest first)",
		options: [{ option: "--limit <n>", description: "how many (default 100)" }],
		async action(broker: ServiceBroker, args: any) {
			try {
				const params = args.options?.limit ? { limit: Number(args.options.limit) } : {};
				const rows: any[] = await broker.call("payments.reconciliations", params, { meta });
				if (!rows.length) return console.log("No repairs.");
				console.log(formatTable(["at", "action", "payment", "order", "amount (cents)", "reason"], rows.map(row)));
			} catch (err) {
				failed("reconciliations", err);
			}
		},
	},
	{
		command: "reconcile",
		description: "Run a payment reconciliation pass now and list what it repaired",
		options: [{ option: "--grace <ms>", description: "only payments untouched for this long (default: PAYMENTS_RECONCILE_GRACE_MS)" }],
		async action(broker: ServiceBroker, args: any) {
			try {
				const params = args.options?.grace !== undefined ? { graceMs: Number(args.options.grace) } : {};
				const { repaired }: { repaired: any[] } = await broker.call("payments.reconcile", params, { meta, timeout: 120_000 });
				console.log(repaired.length ? formatTable(["at", "action", "payment", "order", "amount (cents)", "reason"], repaired.map(row)) : "Nothing to repair.");
			} catch (err) {
				failed("reconcile", err);
			}
		},
	},
];
