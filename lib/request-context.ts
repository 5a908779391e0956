/**
 * The request id (and caller) of whatever a handler is doing, carried through async calls so
 * that every log line of a request names it, in every process the request passes through.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import type { Context, Middleware } from "moleculer";

export interface RequestScope {
	requestId?: string;
}

export const requestScope = new AsyncLocalStorage<RequestScope>();

export function currentRequestId(): string | undefined {
	return requestScope.getStore()?.requestId;
}

/** Broker middleware: runs each local action and event handler inside its request's scope. */
export const RequestContextMiddleware: Middleware = {
	name: "RequestContext",
	localAction(handler: (ctx: Context) => Promise<unknown>) {
		return (ctx: Context) => requestScope.run({ requestId: ctx.requestID ?? undefined }, () => handler(ctx));
	},
	localEvent(handler: (ctx: Context) => Promise<unknown>) {
		return (ctx: Context) => requestScope.run({ requestId: ctx.requestID ?? undefined }, () => handler(ctx));
	},
} as Middleware;
