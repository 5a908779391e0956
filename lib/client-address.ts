/**
 * The client's address, for rate limits and login throttling. Without a trusted proxy it is the
 * socket's peer. Behind proxies, `X-Forwarded-For` is read from the right: each entry was
 * appended by the hop before it, so only the entries our own proxies wrote can be believed, and
 * the client is the right-most address that is not one of them. The left-most entry is whatever
 * the client chose to write, and is never used.
 *
 * `TRUST_PROXY` (config): `false` (default) ignores the header; a number `n` trusts the `n` hops
 * nearest to the gateway (`true` = 1: one proxy in front, e.g. the Swarm ingress or a load
 * balancer); a comma-separated list of addresses, CIDR ranges or `loopback` / `linklocal` /
 * `uniquelocal` trusts the hops in it. proxy-addr (the library Express uses) walks the header.
 */
import type { IncomingMessage } from "node:http";
import proxyAddr from "proxy-addr";

export type TrustProxy = false | number | string[];
export type TrustFunction = ((addr: string, hop: number) => boolean) | undefined;

/** Parses TRUST_PROXY's text; throws on a bad address list (the configuration names the variable). */
export function parseTrustProxy(value: string | undefined): TrustProxy {
	const v = (value ?? "").trim().toLowerCase();
	if (v === "" || v === "false" || v === "0" || v === "no") return false;
	if (v === "true" || v === "yes") return 1;
	if (/^\d+$/.test(v)) return Number(v);
	const list = v.split(",").map(s => s.trim()).filter(Boolean);
	proxyAddr.compile(list);
	return list;
}

/** The trust function for proxy-addr, compiled once. */
export function trustFunction(trust: TrustProxy): TrustFunction {
	if (trust === false || trust === 0) return undefined;
	if (typeof trust === "number") return (_addr, hop) => hop < trust;
	return proxyAddr.compile(trust);
}

/** The client address of a request, at most 64 characters (it becomes a map key). */
export function clientAddress(req: IncomingMessage, trust: TrustFunction): string {
	const peer = req.socket?.remoteAddress ?? "unknown";
	if (!trust) return peer;
	try {
		return proxyAddr(req, trust).slice(0, 64);
	} catch {
		return peer;
	}
}
