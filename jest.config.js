// Tiers, each in its own folder (STYLE.md): unit (no broker I/O), integration (several
// brokers in one process), e2e (real processes over NATS and PostgreSQL).
const transform = { "^.+\\.ts$": ["@swc/jest", { jsc: { parser: { syntax: "typescript" }, target: "es2023" } }] };
const common = { testEnvironment: "node", transform, moduleFileExtensions: ["ts", "js", "json"] };

module.exports = {
	projects: [
		{ ...common, displayName: "unit", testMatch: ["<rootDir>/test/unit/**/*.spec.ts"] },
		{ ...common, displayName: "integration", testMatch: ["<rootDir>/test/integration/**/*.spec.ts"] },
		{ ...common, displayName: "e2e", testMatch: ["<rootDir>/test/e2e/**/*.spec.ts"] },
		// Hostile values for every route of the OpenAPI document (issue 9), on SQLite and PostgreSQL.
		{ ...common, displayName: "fuzz", testMatch: ["<rootDir>/test/fuzz/**/*.spec.ts"] },
	],
};
