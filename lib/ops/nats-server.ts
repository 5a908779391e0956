/**
 * A nats-server child process run with the stack's own configuration (deploy/nats/nats.conf):
 * credentials, mutual TLS and JetStream. `npm run cluster` runs one for its nodes, the tests run
 * one to show what it refuses. The server binds any free port itself (NATS_PORT=-1) and we read
 * the port it reports, so no port is ever picked first and bound later by someone else.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";

/** The repository root, from lib/ops in the sources or dist/lib/ops in the build. */
function repositoryRoot(): string {
	let dir = __dirname;
	while (!existsSync(join(dir, "package.json"))) dir = join(dir, "..");
	return dir;
}

export const NATS_CONFIG_FILE = join(repositoryRoot(), "deploy", "nats", "nats.conf");
export const MAKE_CERTS_SCRIPT = join(repositoryRoot(), "deploy", "nats", "make-certs.sh");

/** The TLS files deploy/nats/make-certs.sh writes into a directory. */
export interface NatsTlsFiles {
	ca: string;
	serverCert: string;
	serverKey: string;
	clientCert: string;
	clientKey: string;
}

export function tlsFiles(dir: string): NatsTlsFiles {
	return {
		ca: join(dir, "ca.pem"),
		serverCert: join(dir, "server.pem"),
		serverKey: join(dir, "server-key.pem"),
		clientCert: join(dir, "client.pem"),
		clientKey: join(dir, "client-key.pem"),
	};
}

/** Creates the CA, server and client certificates in `dir` unless they are there (needs openssl). */
export function ensureCertificates(dir: string, names = ["localhost", "127.0.0.1"]): NatsTlsFiles {
	const files = tlsFiles(dir);
	if (!Object.values(files).every(f => existsSync(f))) execFileSync("bash", [MAKE_CERTS_SCRIPT, dir, ...names], { stdio: "ignore" });
	return files;
}

/** The nats-server binary on PATH or in /usr/sbin, if any. */
export function findNatsServer(): string | undefined {
	for (const dir of [...(process.env.PATH ?? "").split(":"), "/usr/sbin", "/usr/local/sbin"]) {
		if (dir && existsSync(join(dir, "nats-server"))) return join(dir, "nats-server");
	}
	return undefined;
}

export interface NatsServerOptions {
	user: string;
	password: string;
	tls: NatsTlsFiles;
	storeDir: string;
	host?: string;
	/** Default -1: any free port, read back from the server's log. */
	port?: number;
	binary?: string;
	/** Each line the server logs. */
	onLine?: (line: string) => void;
}

export class NatsServerProcess {
	private child?: ChildProcess;
	port = 0;
	host: string;

	constructor(private readonly opts: NatsServerOptions) {
		this.host = opts.host ?? "127.0.0.1";
	}

	get url(): string {
		return `nats://${this.host}:${this.port}`;
	}

	/** Starts the server; resolves once it accepts clients, with the port it bound (a restart binds the same port again). */
	start(timeoutMs = 15_000): Promise<number> {
		mkdirSync(this.opts.storeDir, { recursive: true });
		const binary = this.opts.binary ?? findNatsServer();
		if (!binary) return Promise.reject(new Error("nats-server is not installed"));
		const child = spawn(binary, ["-c", NATS_CONFIG_FILE], {
			env: {
				PATH: process.env.PATH,
				NATS_HOST: this.host,
				NATS_PORT: String(this.opts.port ?? (this.port || -1)),
				NATS_STORE_DIR: this.opts.storeDir,
				NATS_USER: this.opts.user,
				NATS_PASSWORD: this.opts.password,
				NATS_TLS_CERT: this.opts.tls.serverCert,
				NATS_TLS_KEY: this.opts.tls.serverKey,
				NATS_TLS_CA: this.opts.tls.ca,
			},
			stdio: ["ignore", "pipe", "pipe"],
		});
		this.child = child;
		return new Promise((resolve, reject) => {
			let log = "";
			let bound = 0;
			const timer = setTimeout(() => fail(new Error(`nats-server did not report a port within ${timeoutMs} ms:\n${log}`)), timeoutMs);
			const fail = (err: Error) => {
				clearTimeout(timer);
				child.kill("SIGKILL");
				reject(err);
			};
			const onData = (d: Buffer) => {
				const text = d.toString();
				log += text;
				for (const line of text.split("\n").filter(Boolean)) this.opts.onLine?.(line);
				const m = /Listening for client connections on \S+:(\d+)/.exec(log);
				if (m && /Server is ready/.test(log) && !bound) {
					clearTimeout(timer);
					bound = this.port = Number(m[1]);
					resolve(bound);
				}
			};
			child.stdout!.on("data", onData);
			child.stderr!.on("data", onData);
			child.once("exit", code => {
				if (!bound) fail(new Error(`nats-server exited with ${code}:\n${log}`));
			});
		});
	}

	/** Stops the server (SIGTERM: JetStream flushes its store). */
	async stop(): Promise<void> {
		const child = this.child;
		if (!child || child.exitCode !== null || child.signalCode !== null) return;
		const exited = new Promise(r => child.once("exit", r));
		child.kill("SIGTERM");
		await exited;
	}

	get pid(): number | undefined {
		return this.child?.pid;
	}
}
