/**
 * How the catalogue import and export reach the services: through a broker that either joins
 * the cluster (`npm run import` with TRANSPORTER, the REPL) or runs them itself (embedded, on
 * the SQLite files of DATA_DIR). Calls go as the system user, the way internal jobs call.
 */
import type { ServiceBroker } from "moleculer";
import { SYSTEM_USER } from "../access";
import { serviceAppears } from "../await-service";

export interface CatalogueClient {
	/** Calls an action as the system user. */
	call<T = any>(action: string, params: Record<string, unknown>, timeoutMs?: number): Promise<T>;
	/** Whether `service` runs in the cluster, waiting up to `waitMs` for it to appear. */
	has(service: string, waitMs?: number): Promise<boolean>;
}

/** A bulk batch is one transaction of a few hundred rows; a minute is far beyond what one takes. */
const CALL_TIMEOUT_MS = 60_000;

export function brokerClient(broker: ServiceBroker): CatalogueClient {
	return {
		call: (action, params, timeoutMs = CALL_TIMEOUT_MS) => broker.call(action, params, { meta: { user: SYSTEM_USER }, timeout: timeoutMs }),
		has: (service, waitMs = 5_000) => serviceAppears(broker, service, waitMs, () => false),
	};
}
