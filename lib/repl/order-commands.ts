/**
 * REPL command `order <id|number>`: one order's whole story in one view — its status history,
 * the log of every saga run for it (checkout, cancel), refunds and shipment events, merged in
 * time order, followed by its payments, fulfillments and shipments as they are now. Each part
 * comes from its owning service (orders.timeline, payments.byOrder, fulfillment.byOrder,
 * shipping.track), called as the system user; a part whose service is down says so and the rest
 * still prints.
 */
import type { ServiceBroker } from "moleculer";
import { SYSTEM_USER } from "../access";
import { type EventCommand, formatTable } from "./event-commands";

const meta = { user: SYSTEM_USER };

export interface OrderTimelineData {
	order: any;
	sagas: { id: string; name: string; status: string; failure: any; log: { at: string; step: string; phase: string; status: string; detail: unknown }[] }[];
	payments: any[] | { error: string };
	fulfillments: any[] | { error: string };
	shipments: any[];
}

const money = (m: { amount: number; currency: string } | undefined | null) => (m ? `${(m.amount / 100).toFixed(2)} ${m.currency}` : "");
const short = (id: string) => (id.length > 12 ? `${id.slice(0, 8)}…` : id);

/** Every dated fact about the order, oldest first: [at, source, what]. */
export function timelineRows(d: OrderTimelineData): string[][] {
	const rows: [string, string, string][] = [];
	for (const h of d.order.history ?? []) rows.push([h.at, "order", `status ${h.status}`]);
	for (const r of d.order.refunds ?? []) rows.push([r.at, "payments", `refund ${money(r.amount)}`]);
	for (const s of d.sagas) {
		for (const l of s.log) {
			const detail = l.detail ? ` ${JSON.stringify(l.detail).slice(0, 60)}` : "";
			rows.push([l.at, `saga ${s.name} ${short(s.id)}`, `${l.step} ${l.phase} ${l.status}${detail}`]);
		}
	}
	for (const sh of d.shipments) for (const e of sh.events ?? []) rows.push([e.at, `shipment ${sh.trackingNumber}`, e.status]);
	return rows.sort((a, b) => a[0].localeCompare(b[0]));
}

/** The whole view as text (what the command prints). */
export function renderOrderTimeline(d: OrderTimelineData): string {
	const o = d.order;
	const out: string[] = [];
	out.push(`Order ${o.number} (${o.id}): ${o.status}${o.failureReason ? ` — ${o.failureReason}` : ""}; total ${money(o.total)}; customer ${o.customerId ?? "?"}; created ${o.createdAt}`);
	out.push("", "Timeline", formatTable(["at", "source", "what"], timelineRows(d)));
	out.push("", "Sagas");
	out.push(d.sagas.length ? formatTable(["id", "saga", "status", "failure"], d.sagas.map(s => [s.id, s.name, s.status, s.failure ? `${s.failure.step}: ${s.failure.error?.type ?? s.failure.error?.message ?? ""}` : ""])) : "(none)");
	out.push("", "Payments");
	if ("error" in d.payments) out.push(`(unavailable: ${d.payments.error})`);
	else out.push(d.payments.length ? formatTable(["id", "status", "amount", "captured", "refunded"], d.payments.map(p => [p.id, p.status, String(p.amount), String(p.captured), String(p.refunded)])) : "(none)");
	out.push("", "Fulfillments");
	if ("error" in d.fulfillments) out.push(`(unavailable: ${d.fulfillments.error})`);
	else out.push(d.fulfillments.length ? formatTable(["id", "status", "tracking"], d.fulfillments.map(f => [f.id, f.status, f.trackingNumber ?? ""])) : "(none)");
	out.push("", "Shipments");
	out.push(d.shipments.length ? formatTable(["tracking", "status", "events"], d.shipments.map(s => [s.trackingNumber, s.status, String((s.events ?? []).length)])) : "(none)");
	return out.join("\n");
}

async function part<T>(p: Promise<T>): Promise<T | { error: string }> {
	try {
		return await p;
	} catch (err) {
		const e = err as { message?: string; type?: string };
		return { error: `${e.message ?? err}${e.type ? ` (${e.type})` : ""}` };
	}
}

/** Gathers an order's timeline from the services that own its parts. */
export async function loadOrderTimeline(broker: ServiceBroker, ref: string): Promise<OrderTimelineData> {
	const { order, sagas } = (await broker.call("orders.timeline", { ref }, { meta })) as { order: any; sagas: OrderTimelineData["sagas"] };
	const [payments, fulfillments] = await Promise.all([
		part(broker.call("payments.byOrder", { orderId: order.id }, { meta }) as Promise<any[]>),
		part(broker.call("fulfillment.byOrder", { orderId: order.id }, { meta }) as Promise<any[]>),
	]);
	const tracking = Array.isArray(fulfillments) ? fulfillments.map(f => f.trackingNumber).filter(Boolean) : [];
	const shipments = (await Promise.all(tracking.map(t => part(broker.call("shipping.track", { trackingNumber: t }, { meta }))))).filter(s => !("error" in (s as object)));
	return { order, sagas, payments, fulfillments, shipments };
}

export const orderCommands: EventCommand[] = [
	{
		command: "order <ref>",
		description: "An order's timeline: status history, saga log, payments, fulfillments and shipments (by id or number)",
		async action(broker: ServiceBroker, args: any) {
			try {
				console.log(renderOrderTimeline(await loadOrderTimeline(broker, String(args.ref))));
			} catch (err) {
				const e = err as { message?: string; type?: string };
				console.log(`order failed: ${e?.message ?? err}${e?.type ? ` (${e.type})` : ""}`);
			}
		},
	},
];
