/**
 * How every NATS connection of a node authenticates (the Moleculer transporter and the JetStream
 * event bus alike): the cluster's credentials (`NATS_USER`/`NATS_PASSWORD`, a Docker secret in
 * the stack) and, when the server speaks TLS, the CA that signed it and this node's client
 * certificate (`NATS_TLS_*_FILE`). Options in the shape of the `nats` client's `connect()`.
 */
import type { Config } from "../config";

export interface NatsAuthOptions {
	user?: string;
	pass?: string;
	tls?: { caFile?: string; certFile?: string; keyFile?: string };
}

export function natsAuthOptions(c: Pick<Config, "NATS_USER" | "NATS_PASSWORD" | "NATS_TLS_CA_FILE" | "NATS_TLS_CERT_FILE" | "NATS_TLS_KEY_FILE">): NatsAuthOptions {
	const out: NatsAuthOptions = {};
	if (c.NATS_USER) out.user = c.NATS_USER;
	if (c.NATS_PASSWORD) out.pass = c.NATS_PASSWORD;
	if (c.NATS_TLS_CA_FILE || c.NATS_TLS_CERT_FILE) {
		out.tls = {};
		if (c.NATS_TLS_CA_FILE) out.tls.caFile = c.NATS_TLS_CA_FILE;
		if (c.NATS_TLS_CERT_FILE) out.tls.certFile = c.NATS_TLS_CERT_FILE;
		if (c.NATS_TLS_KEY_FILE) out.tls.keyFile = c.NATS_TLS_KEY_FILE;
	}
	return out;
}

/**
 * `host:port` of each server in a TRANSPORTER URL list. Given to the transporter as `servers`,
 * not as `url`: Moleculer's NATS transporter overwrites `user`/`pass` with the URL's (none) when
 * it parses a `url` itself.
 */
export function natsServers(transporter: string): string[] {
	return transporter.split(",").map(u => new URL(u.trim()).host);
}
