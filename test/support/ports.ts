/**
 * A TCP port free on 127.0.0.1 right now (the OS picks it: listen on 0, read it, close), for a
 * process a test or benchmark starts itself (nats-server, redis-server, PostgreSQL). Another
 * process may take it before it is used, as with any such probe.
 */
import { type AddressInfo, createServer } from "node:net";

export function freePort(): Promise<number> {
	return new Promise((resolve, reject) => {
		const s = createServer();
		s.once("error", reject);
		s.listen(0, "127.0.0.1", () => {
			const port = (s.address() as AddressInfo).port;
			s.close(() => resolve(port));
		});
	});
}
