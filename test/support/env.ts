/**
 * Test environment: every test file gets its own data directory, namespace and database
 * prefix, so files running in parallel never share state.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { resetConfig } from "../../config";

export const TEST_JWT_SECRET = "test-secret-test-secret-test-secret-0123456789";
export const TEST_ADMIN = { email: "admin@test.local", password: "admin-password-123" };

/** Sets the environment for in-process brokers; call before loading services. */
export function useTestEnv(extra: Record<string, string> = {}): { dataDir: string } {
	const dataDir = mkdtempSync(join(tmpdir(), "mc-test-"));
	Object.assign(process.env, {
		NODE_ENV: "test",
		DATA_DIR: dataDir,
		PORT: "0",
		METRICS_ENABLED: "false",
		LOG_LEVEL: "warn",
		JWT_SECRET: TEST_JWT_SECRET,
		ADMIN_EMAIL: TEST_ADMIN.email,
		ADMIN_PASSWORD: TEST_ADMIN.password,
		SEED_DEMO: "false",
		...extra,
	});
	resetConfig();
	return { dataDir };
}
