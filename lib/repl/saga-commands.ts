/**
 * REPL commands for sagas (mixins/saga.mixin.ts). They call the owning service's saga actions
 * as the system user, so operators see and move stuck sagas without touching databases.
 *
 *   sagas [--status S] [--service orders]   running and stuck sagas (or those in status S)
 *   saga-log <id> [--service orders]        one saga's log, step by step
 *   saga-retry <id> [--service orders]      run a STUCK saga's remaining compensations again
 *   saga-compensate <id> [--service orders] give up a saga and compensate what it did
 */
import type { ServiceBroker } from "moleculer";
import { SYSTEM_USER } from "../access";
import { type EventCommand, formatTable } from "./event-commands";

const meta = { user: SYSTEM_USER };
const service = (args: any) => String(args.options?.service ?? "orders");

function failed(what: string, err: any): void {
	console.log(`${what} failed: ${err?.message ?? err}${err?.type ? ` (${err.type})` : ""}`);
}

export const sagaCommands: EventCommand[] = [
	{
		command: "sagas",
		description: "List running and stuck sagas (or those with --status)",
		options: [
			{ option: "--status <status>", description: "RUNNING, COMPENSATING, STUCK, COMPLETED or COMPENSATED" },
			{ option: "--service <name>", description: "the service owning the sagas (default orders)" },
		],
		async action(broker: ServiceBroker, args: any) {
			try {
				const params = args.options?.status ? { status: String(args.options.status) } : {};
				const rows: any[] = await broker.call(`${service(args)}.sagas`, params, { meta });
				if (!rows.length) return console.log("No sagas.");
				console.log(formatTable(["id", "saga", "status", "step", "failure", "lease", "updated"], rows.map(r => [r.id, r.name, r.status, String(r.step), r.failure ? `${r.failure.step}: ${r.failure.error?.type ?? r.failure.error?.message ?? ""}` : "", r.leaseOwner ?? "", r.updatedAt])));
			} catch (err) {
				failed("sagas", err);
			}
		},
	},
	{
		command: "saga-log <id>",
		description: "Show one saga's log",
		options: [{ option: "--service <name>", description: "the service owning the saga (default orders)" }],
		async action(broker: ServiceBroker, args: any) {
			try {
				const s: any = await broker.call(`${service(args)}.sagaLog`, { id: String(args.id) }, { meta });
				console.log(`${s.name} ${s.id}: ${s.status} (next step ${s.step})${s.failure ? `, failed at ${s.failure.step}` : ""}`);
				console.log(formatTable(["at", "step", "phase", "status", "detail"], s.log.map((l: any) => [l.at, l.step, l.phase, l.status, l.detail ? JSON.stringify(l.detail).slice(0, 80) : ""])));
			} catch (err) {
				failed("saga-log", err);
			}
		},
	},
	{
		command: "saga-retry <id>",
		description: "Run a STUCK saga's remaining compensations again",
		options: [{ option: "--service <name>", description: "the service owning the saga (default orders)" }],
		async action(broker: ServiceBroker, args: any) {
			try {
				const r: any = await broker.call(`${service(args)}.sagaRetry`, { id: String(args.id) }, { meta, timeout: 120_000 });
				console.log(`saga ${r.id} is now ${r.status}`);
			} catch (err) {
				failed("saga-retry", err);
			}
		},
	},
	{
		command: "saga-compensate <id>",
		description: "Abandon a saga and compensate the steps it began",
		options: [{ option: "--service <name>", description: "the service owning the saga (default orders)" }],
		async action(broker: ServiceBroker, args: any) {
			try {
				const r: any = await broker.call(`${service(args)}.sagaCompensate`, { id: String(args.id) }, { meta, timeout: 120_000 });
				console.log(`saga ${r.id} is now ${r.status}`);
			} catch (err) {
				failed("saga-compensate", err);
			}
		},
	},
];
