/**
 * A stop that finishes: a node given SIGTERM answers nothing new, lets what is in flight finish,
 * and is gone within SHUTDOWN_TIMEOUT_MS.
 *
 * Two things stood in the way (issue 11):
 *  1. Leaked contexts. Moleculer tracks every outgoing call's context until the call's promise
 *     settles, and waits for them when stopping. Its Timeout middleware sits *outside* the
 *     tracker: when a remote call times out (the callee died, or dropped the request while it
 *     stopped) the caller gets its RequestTimeoutError, but the inner promise — the pending
 *     request in the transit — never settles. The context stays tracked and the pending request
 *     stays in memory for ever; after fault runs idle nodes counted 45–85 of them and every stop
 *     waited the full timeout. `RemoteCallDeadline` forgets such a call once its caller gave up,
 *     and settles it as timed out so that the circuit breaker counts it.
 *  2. A gateway that keeps taking requests. moleculer-web closes its server only after the
 *     broker has waited for the running contexts, so under load new requests keep arriving and
 *     the wait never ends. `drainGatewayOnStop` closes the listening socket first, answers any
 *     request that still arrives on a kept-alive connection with 503 and `Connection: close`, and
 *     asks in-flight answers to close their connection.
 */
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { type Context, Errors, type Middleware, type ServiceBroker } from "moleculer";

/** A little after the caller's own timeout: the call is abandoned only once the caller has its answer. */
const RELEASE_GRACE_MS = 250;

/**
 * Moleculer middleware: a remote call still unanswered a little after its timeout is abandoned —
 * its pending request is dropped from the transit and its context from the tracked ones — and
 * the inner call settles with a RequestTimeoutError (HTTP 504, type REQUEST_TIMEOUT).
 *
 * The caller already has its own RequestTimeoutError from Moleculer's Timeout middleware, which
 * sits outside this one and outside the circuit breaker (service-broker.js INTERNAL_MIDDLEWARES:
 * CircuitBreaker, then Timeout; user middlewares are innermost). This later rejection reaches only
 * the breaker, which counts it against the callee's endpoint (lib/errors.ts `countsAgainstHealth`:
 * timeouts count). Without it the abandoned promise never settled and a hung callee — paused,
 * stuck on a lock, its process frozen — was never isolated by its breaker: every call to it waited
 * the full timeout until its heartbeat expired, even with a healthy replica beside it (issue 7).
 * Only timeouts that are the callee's fault count (see notTheCalleesFault): not a call to a process
 * since replaced, not a call given less than the action's usual time, not the only replica.
 *
 * Only remote calls: a node's calls to its own services are left to Moleculer. Settling them early
 * (tried in f8bc058, so that a local service that hangs stops being preferred) let the handler run
 * on untracked and outside its bulkhead slot, and a stall shared by two replicas opened both local
 * breakers, refusing the action cluster-wide for 10 s after it ended (adversary,
 * test/integration/adversary/local-settle.spec.ts, shared-stall-breakers.spec.ts). The sagas route
 * around a hung local service themselves (mixins/saga.mixin.ts routeFor).
 */
export const RemoteCallDeadlineMiddleware: Middleware = {
	name: "RemoteCallDeadline",
	remoteAction(next: (ctx: Context) => Promise<unknown>) {
		return (ctx: Context) => settleForBreaker(ctx, next(ctx));
	},
} as Middleware;

/** `p`, or a RequestTimeoutError RELEASE_GRACE_MS after the call's timeout (marked not counted when not the callee's fault), the call forgotten (abandon). */
function settleForBreaker(ctx: Context, p: Promise<unknown>): Promise<unknown> {
	const timeout = Number(ctx.options?.timeout ?? 0);
	if (!(timeout > 0)) return p;
	const sentTo = instanceOf(ctx);
	return new Promise((resolve, reject) => {
		const timer = setTimeout(() => {
			abandon(ctx);
			const err = new Errors.RequestTimeoutError({ action: ctx.action?.name ?? "", nodeID: ctx.nodeID ?? "" });
			// A timeout that is not the callee's fault is marked as another node's error, which
			// Moleculer's breaker does not count (whatever its `check`).
			const notCounted = notTheCalleesFault(ctx, timeout, sentTo);
			if (notCounted) (err as { nodeID?: string }).nodeID = `${ctx.nodeID} (${notCounted})`;
			reject(err);
		}, timeout + RELEASE_GRACE_MS);
		timer.unref();
		p.then(
			value => {
				clearTimeout(timer);
				resolve(value);
			},
			err => {
				clearTimeout(timer);
				reject(err);
			},
		);
	});
}

/**
 * Why a remote call's timeout must not count against its callee's breaker, or null when it must.
 * The breaker closes the callee's action for every caller on this node, so only the callee's own
 * fault may count (issue 7, adversary/breaker-slow-callee.spec.ts):
 *  - "replaced": the call went to a process that has since been replaced (same nodeID, new
 *    instanceID); its silence says nothing about the new one, whose breaker lib/breaker.ts reset;
 *  - "caller's budget": the call had less time than the action is given by default (a per-call
 *    timeout shorter than the action's or the broker's, a nested call's remaining distributed
 *    budget) — an impatient caller must not close a healthy slow action for patient ones;
 *  - "only replica": no other node has the action available. Opening the breaker would isolate
 *    nothing and only refuse: a stall of a few seconds would become the breaker's half-open time
 *    (10 s) of refusals, longer than the saga waits out an unavailable step (~9 s).
 */
function notTheCalleesFault(ctx: Context, timeout: number, sentTo: string | undefined): string | null {
	if (instanceOf(ctx) !== sentTo) return `replaced ${sentTo}`;
	const expected = Number((ctx.action as { timeout?: number } | undefined)?.timeout ?? ctx.broker.options.requestTimeout ?? 0);
	if (timeout < expected) return "caller's budget";
	const name = ctx.action?.name;
	const endpoints = name ? (ctx.broker.registry.getActionEndpoints(name) as unknown as { endpoints: { id: string; isAvailable: boolean }[] } | undefined) : undefined;
	if (!endpoints?.endpoints.some(ep => ep.id !== ctx.nodeID && ep.isAvailable)) return "only replica";
	return null;
}

/** The instanceID (one per process) of the node a remote call went to, as the registry knows it now. */
function instanceOf(ctx: Context): string | undefined {
	return ctx.nodeID ? (ctx.broker.registry as unknown as { nodes: { get(id: string): { instanceID?: string } | undefined } }).nodes.get(ctx.nodeID)?.instanceID : undefined;
}

/** Forgets a remote call: its pending request (so an answer arriving later is ignored) and its tracked context. */
function abandon(ctx: Context): void {
	const broker = ctx.broker as any;
	broker.transit?.removePendingRequest?.(ctx.id);
	const tracked: Context[] | undefined = (ctx.service as any)?._trackedContexts ?? broker._trackedContexts;
	const i = tracked?.indexOf(ctx) ?? -1;
	if (i >= 0) tracked!.splice(i, 1);
}

/** How many contexts this node still tracks (outgoing calls and local handlers): 0 when idle. */
export function runningContexts(broker: ServiceBroker): number {
	const b = broker as any;
	return (b._trackedContexts?.length ?? 0) + (b.services as any[]).reduce((n, s) => n + (s._trackedContexts?.length ?? 0), 0);
}

type DrainableServer = Server & { draining?: boolean; activeResponses?: Set<ServerResponse> };

const DRAINING_BODY = JSON.stringify({ name: "ServiceUnavailableError", message: "This gateway is shutting down; retry", code: 503, type: "SHUTTING_DOWN" });

/**
 * Gateway middleware (moleculer-web `use`, first in line): keeps the set of answers in flight,
 * and once the server drains answers new requests 503 with `Connection: close`.
 */
export function drainMiddleware(req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void): void {
	const server = (req.socket as unknown as { server?: DrainableServer }).server;
	if (server?.draining) {
		res.writeHead(503, { "Content-Type": "application/json; charset=utf-8", Connection: "close", "Retry-After": "1" });
		res.end(DRAINING_BODY);
		return;
	}
	if (server) {
		server.activeResponses ??= new Set();
		server.activeResponses.add(res);
		res.once("close", () => server.activeResponses?.delete(res));
	}
	next();
}

/** Stops a server from taking anything new; what is in flight finishes and closes its connection. */
export function drainHttpServer(server: DrainableServer): void {
	if (server.draining) return;
	server.draining = true;
	if (server.listening) server.close();
	server.closeIdleConnections();
	for (const res of server.activeResponses ?? []) {
		if (!res.headersSent) res.setHeader("Connection", "close");
	}
}

/** Makes `broker.stop()` (and so SIGTERM) drain the node's HTTP servers before anything else. */
export function drainGatewayOnStop(broker: ServiceBroker): void {
	const stop = broker.stop.bind(broker);
	broker.stop = () => {
		for (const svc of (broker as any).services as any[]) {
			if (svc.server && typeof svc.server.close === "function") drainHttpServer(svc.server);
		}
		return stop();
	};
}
