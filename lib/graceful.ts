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
 *     waited the full timeout. `RemoteCallDeadline` ends the inner call at the same deadline.
 *  2. A gateway that keeps taking requests. moleculer-web closes its server only after the
 *     broker has waited for the running contexts, so under load new requests keep arriving and
 *     the wait never ends. `drainGatewayOnStop` closes the listening socket first, answers any
 *     request that still arrives on a kept-alive connection with 503 and `Connection: close`, and
 *     asks in-flight answers to close their connection.
 */
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { type Context, Errors, type Middleware, type ServiceBroker } from "moleculer";

/** A little after the caller's own timeout, so the caller always gets the Timeout middleware's error first. */
const RELEASE_GRACE_MS = 250;

/**
 * Ends a remote call nobody waits for any more. Only Moleculer's circuit breaker and context
 * tracker (inside the Timeout middleware) ever see it: the caller already has its
 * RequestTimeoutError. Its code 0 keeps it out of the breaker's count, which never saw these
 * timeouts before either (whether timeouts should trip a breaker is the breaker's policy, not this).
 */
export class CallReleasedError extends Errors.MoleculerError {
	constructor(action: string | undefined, nodeID: string | undefined) {
		super(`Call to '${action}' on '${nodeID}' released after its timeout`, 0, "CALL_RELEASED", { action, nodeID });
		this.name = "CallReleasedError";
	}
}

/** Moleculer middleware: a remote call's own promise settles after its timeout, so its context is released. */
export const RemoteCallDeadlineMiddleware: Middleware = {
	name: "RemoteCallDeadline",
	remoteAction(next: (ctx: Context) => Promise<unknown>, action: { name?: string }) {
		return (ctx: Context) => {
			const p = next(ctx);
			const timeout = Number(ctx.options?.timeout ?? 0);
			if (!(timeout > 0)) return p;
			let timer: NodeJS.Timeout | undefined;
			const deadline = new Promise<never>((_, reject) => {
				timer = setTimeout(() => {
					// The transit would keep waiting for an answer that is no longer awaited.
					(ctx.broker as any).transit?.removePendingRequest?.(ctx.id);
					reject(new CallReleasedError(action.name, ctx.nodeID ?? undefined));
				}, timeout + RELEASE_GRACE_MS);
				timer.unref();
			});
			return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
		};
	},
} as Middleware;

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
