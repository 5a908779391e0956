/**
 * REPL commands for durable events (docs/EVENTS.md). Each one only calls `$events` actions, which
 * run on the service nodes (they hold the outboxes and the JetStream connection).
 *
 *   events-status                      outbox counts per node, consumer backlog, dead letters
 *   events-dead [--group g] [--limit n] list dead letters, oldest first
 *   events-replay <id> | --all [--group g]  deliver dead letters again (fresh attempts)
 *   events-discard <id>                drop a dead letter for good
 */
import type { ServiceBroker } from "moleculer";

interface Args {
	options?: Record<string, unknown>;
	[name: string]: unknown;
}

export interface EventCommand {
	command: string;
	description: string;
	options?: { option: string; description: string }[];
	action(broker: ServiceBroker, args: Args, helpers?: unknown): Promise<void>;
}

/** Plain aligned columns: the REPL prints to a terminal, tests read the same text. */
export function formatTable(header: string[], rows: string[][]): string {
	const widths = header.map((h, i) => Math.max(h.length, ...rows.map(r => (r[i] ?? "").length)));
	const line = (cells: string[]) => cells.map((c, i) => (c ?? "").padEnd(widths[i])).join("  ").trimEnd();
	return [line(header), line(widths.map(w => "-".repeat(w))), ...rows.map(line)].join("\n");
}

function print(text: string): void {
	console.log(text);
}

function failed(what: string, err: unknown): void {
	const e = err as { message?: string; type?: string };
	console.log(`${what} failed: ${e?.message ?? err}${e?.type ? ` (${e.type})` : ""}`);
}

/** `$events` runs on every node with events; the backlog is cluster-wide, outboxes are per node. */
async function eventNodes(broker: ServiceBroker): Promise<string[]> {
	const list = broker.registry.getServiceList({ onlyAvailable: true, skipInternal: false }) as { name: string; nodeID: string }[];
	return [...new Set(list.filter(s => s.name === "$events").map(s => s.nodeID))].sort();
}

export const eventCommands: EventCommand[] = [
	{
		command: "events-status",
		description: "Outbox counts per node, each consumer group's backlog, and the number of dead letters",
		async action(broker) {
			const nodes = await eventNodes(broker);
			if (!nodes.length) return print("No node runs services with events.");
			const outboxRows: string[][] = [];
			let shared: any;
			for (const nodeID of nodes) {
				try {
					const s: any = await broker.call("$events.status", {}, { nodeID });
					shared ??= s;
					for (const [service, c] of Object.entries<any>(s.outboxes)) {
						outboxRows.push([nodeID, service, String(c.PENDING), String(c.PUBLISHED), String(c.DEAD)]);
					}
				} catch (err) {
					failed(`$events.status on ${nodeID}`, err);
				}
			}
			print(formatTable(["node", "outbox of", "pending", "published", "dead"], outboxRows));
			if (!shared) return;
			print(`\nmode: ${shared.mode}${shared.deadLetters === null ? "" : `, dead letters in the stream: ${shared.deadLetters}`}`);
			if (shared.consumers.length) {
				print(
					formatTable(
						["group", "event", "pending", "in flight", "redelivered"],
						shared.consumers.map((c: any) => [c.group, c.event, String(c.pending), String(c.inFlight), String(c.redelivered)]),
					),
				);
			}
		},
	},
	{
		command: "events-dead",
		description: "List dead letters (events a consumer group failed to handle after the last attempt)",
		options: [
			{ option: "--group <group>", description: "only this consumer group" },
			{ option: "--limit <n>", description: "at most n (default 100)" },
		],
		async action(broker, args) {
			const o = args.options ?? {};
			try {
				const params: Record<string, unknown> = {};
				if (o.group) params.group = String(o.group);
				if (o.limit) params.limit = Number(o.limit);
				const res: any = await broker.call("$events.deadLetters", params);
				if (!res.items.length) return print("No dead letters.");
				print(
					formatTable(
						["id", "event", "group", "attempts", "dead at", "error"],
						res.items.map((d: any) => [d.id, d.event, d.group ?? "", String(d.attempts), d.deadAt ?? "", (d.error ?? "").slice(0, 80)]),
					),
				);
				print(`${res.total} dead letter(s). Replay with: events-replay <id>  (or --all)`);
			} catch (err) {
				failed("Listing dead letters", err);
			}
		},
	},
	{
		command: "events-replay [id]",
		description: "Deliver a dead letter again to its consumer group (fresh attempts); --all replays every one",
		options: [
			{ option: "--all", description: "replay every dead letter" },
			{ option: "--group <group>", description: "with --all: only this consumer group's" },
		],
		async action(broker, args) {
			const o = args.options ?? {};
			const id = typeof args.id === "string" ? args.id : undefined;
			if (!id && !o.all) return print("Name a dead letter id (see events-dead) or use --all.");
			try {
				const params: Record<string, unknown> = id ? { id } : { all: true };
				if (!id && o.group) params.group = String(o.group);
				const res: any = await broker.call("$events.replay", params);
				print(`Replayed ${res.replayed} dead letter(s)${res.ids.length ? `: ${res.ids.join(", ")}` : ""}`);
			} catch (err) {
				failed("Replay", err);
			}
		},
	},
	{
		command: "events-discard <id>",
		description: "Drop a dead letter for good (it will not be applied)",
		async action(broker, args) {
			try {
				await broker.call("$events.discard", { id: String(args.id) });
				print(`Discarded ${args.id}`);
			} catch (err) {
				failed("Discard", err);
			}
		},
	},
];
