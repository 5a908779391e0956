import { eventCommands, formatTable } from "../../../lib/repl/event-commands";

/** A broker stand-in that records the actions the commands call. */
function fakeBroker(answers: Record<string, (params: any, opts: any) => unknown>, nodes = ["node-1"]) {
	const calls: { action: string; params: unknown; opts: unknown }[] = [];
	return {
		calls,
		registry: { getServiceList: () => nodes.map(nodeID => ({ name: "$events", nodeID })).concat([{ name: "orders", nodeID: "node-1" }]) },
		async call(action: string, params: unknown, opts?: unknown) {
			calls.push({ action, params, opts });
			const answer = answers[action];
			if (!answer) throw Object.assign(new Error(`no ${action}`), { type: "SERVICE_NOT_FOUND" });
			return answer(params, opts);
		},
	};
}

async function run(name: string, broker: any, args: any): Promise<string> {
	const cmd = eventCommands.find(c => c.command.split(" ")[0] === name)!;
	const out: string[] = [];
	const spy = jest.spyOn(console, "log").mockImplementation((...a: unknown[]) => void out.push(a.join(" ")));
	try {
		await cmd.action(broker, args, {});
	} finally {
		spy.mockRestore();
	}
	return out.join("\n");
}

describe("events REPL commands", () => {
	it("are moleculer-repl command definitions", () => {
		expect(eventCommands.map(c => c.command)).toEqual(["events-status", "events-dead", "events-replay [id]", "events-discard <id>"]);
		for (const c of eventCommands) expect(typeof c.action).toBe("function");
	});

	it("list dead letters through $events.deadLetters, passing the filters", async () => {
		const broker = fakeBroker({
			"$events.deadLetters": () => ({
				items: [{ id: "dlq:7", event: "orders.order.confirmed", group: "cart", attempts: 5, deadAt: "2025-01-01T00:00:00.000Z", error: "boom" }],
				total: 1,
			}),
		});
		const out = await run("events-dead", broker, { options: { group: "cart", limit: "10" } });
		expect(broker.calls).toEqual([{ action: "$events.deadLetters", params: { group: "cart", limit: 10 }, opts: undefined }]);
		expect(out).toContain("dlq:7");
		expect(out).toContain("orders.order.confirmed");
		expect(out).toContain("1 dead letter(s)");
	});

	it("replay one dead letter by id, or all of a group's", async () => {
		const broker = fakeBroker({ "$events.replay": (p: any) => ({ replayed: 1, ids: [p.id ?? "dlq:1"] }) });
		expect(await run("events-replay", broker, { id: "dlq:3", options: {} })).toBe("Replayed 1 dead letter(s): dlq:3");
		await run("events-replay", broker, { options: { all: true, group: "cart" } });
		expect(broker.calls.map(c => c.params)).toEqual([{ id: "dlq:3" }, { all: true, group: "cart" }]);
	});

	it("refuse to replay without an id or --all, and call nothing", async () => {
		const broker = fakeBroker({});
		expect(await run("events-replay", broker, { options: {} })).toContain("Name a dead letter id");
		expect(broker.calls).toEqual([]);
	});

	it("report an action's error instead of throwing", async () => {
		const broker = fakeBroker({
			"$events.discard": () => {
				throw Object.assign(new Error("Dead letter not found"), { type: "DEAD_LETTER_NOT_FOUND" });
			},
		});
		expect(await run("events-discard", broker, { id: "dlq:9" })).toBe("Discard failed: Dead letter not found (DEAD_LETTER_NOT_FOUND)");
	});

	it("show each node's outbox and the cluster's consumer backlog", async () => {
		const broker = fakeBroker(
			{
				"$events.status": (_p: any, opts: any) => ({
					nodeID: opts.nodeID,
					mode: "jetstream",
					deadLetters: 2,
					consumers: [{ group: "cart", event: "orders.order.confirmed", pending: 3, inFlight: 1, redelivered: 0 }],
					outboxes: { [`svc-${opts.nodeID}`]: { PENDING: 4, PUBLISHED: 10, DEAD: 0 } },
				}),
			},
			["node-2", "node-1"],
		);
		const out = await run("events-status", broker, { options: {} });
		expect(broker.calls.map(c => c.opts)).toEqual([{ nodeID: "node-1" }, { nodeID: "node-2" }]);
		expect(out).toContain("svc-node-1");
		expect(out).toContain("svc-node-2");
		expect(out).toContain("dead letters in the stream: 2");
		expect(out).toMatch(/cart\s+orders\.order\.confirmed\s+3\s+1\s+0/);
	});
});

describe("formatTable", () => {
	it("aligns columns under a header", () => {
		expect(formatTable(["a", "bb"], [["xxx", "y"]])).toBe("a    bb\n---  --\nxxx  y");
	});
});
