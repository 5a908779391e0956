#!/usr/bin/env node
/**
 * The whole test run behind `npm test` and CI: build, static checks, then the jest tiers,
 * each with `--json --outputFile` so the counts come from jest itself. Prints one line per step
 * and, as its very last line, `tests: N passed, N failed`; exits non-zero if anything failed.
 *
 * Counting (said again in the summary so nobody has to guess):
 *   - jest tiers contribute numPassedTests / numFailedTests; a test file that fails to run at all
 *     (syntax error, failing import, crash in a hook) counts as one failed test, since jest
 *     reports no tests for it; a tier whose jest dies without writing results counts as one failed.
 *   - each non-jest check (build, typecheck, lint, stack file) counts as one test.
 *
 * Usage: node bin/run-tests.mjs [--only build,typecheck,lint,stack,promconfig,promrules,promtest,unit,integration,fuzz,e2e] [--skip ...]
 * Environment: CI=true makes a missing docker CLI or promtool a failure (otherwise those checks are
 * skipped with a notice); TEST_TIER_TIMEOUT_S bounds each step (default 900 s: the e2e tier takes about 10 min on a 2-core machine).
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { clearInterval, clearTimeout, setInterval, setTimeout } from "node:timers";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const BIN = join(ROOT, "node_modules", ".bin");
const CI = /^(1|true|yes)$/i.test(process.env.CI ?? "");
const STEP_TIMEOUT_MS = Number(process.env.TEST_TIER_TIMEOUT_S ?? 900) * 1000;
// Once jest has written its results it should exit; if open handles keep it alive, we stop waiting.
const EXIT_GRACE_MS = 15_000;

const CHECKS = {
	build: { cmd: [join(BIN, "tsc"), "-p", "tsconfig.build.json"], what: "tsc -p tsconfig.build.json (dist/)" },
	typecheck: { cmd: [join(BIN, "tsc"), "-p", "tsconfig.json", "--noEmit"], what: "tsc --noEmit (sources and tests)" },
	lint: { cmd: [join(BIN, "eslint"), "."], what: "eslint ." },
	stack: { cmd: ["docker", "stack", "config", "-c", "deploy/docker-stack.yml"], what: "docker stack config -c deploy/docker-stack.yml", quiet: true },
	// The Prometheus files of the stack (promtool: Debian package `prometheus`). --syntax-only: the
	// token file it names exists only inside the Prometheus container.
	promconfig: { cmd: ["promtool", "check", "config", "--syntax-only", "deploy/prometheus/prometheus.yml"], what: "promtool check config deploy/prometheus/prometheus.yml", tool: "promtool" },
	promrules: { cmd: ["promtool", "check", "rules", "deploy/prometheus/alerts.yml"], what: "promtool check rules deploy/prometheus/alerts.yml", tool: "promtool" },
	promtest: { cmd: ["promtool", "test", "rules", "deploy/prometheus/alerts.test.yml"], what: "promtool test rules deploy/prometheus/alerts.test.yml", tool: "promtool" },
};
const TIERS = {
	unit: [],
	integration: [],
	// Hostile values for every route of the OpenAPI document, on SQLite and PostgreSQL (issue 9);
	// prints its seed and the number of requests it sent (FUZZ_SEED replays a run).
	fuzz: [],
	// Real processes sharing NATS and PostgreSQL: one file at a time.
	e2e: ["--runInBand"],
};
const ORDER = [...Object.keys(CHECKS), ...Object.keys(TIERS)];

function parseArgs(argv) {
	const pick = flag => {
		const i = argv.indexOf(flag);
		return i >= 0 && argv[i + 1] ? argv[i + 1].split(",").map(s => s.trim()).filter(Boolean) : undefined;
	};
	const only = pick("--only");
	const skip = pick("--skip") ?? [];
	for (const name of [...(only ?? []), ...skip]) {
		if (!ORDER.includes(name)) {
			console.error(`run-tests: unknown step '${name}' (known: ${ORDER.join(", ")})`);
			process.exit(2);
		}
	}
	return ORDER.filter(s => (only ? only.includes(s) : true) && !skip.includes(s));
}

/** Runs a command with inherited output; resolves with its exit code (or "timeout"). */
function run(cmd, args, { quiet = false, watchFile } = {}) {
	return new Promise(resolve => {
		const child = spawn(cmd, args, { cwd: ROOT, stdio: ["ignore", quiet ? "pipe" : "inherit", "inherit"], env: process.env });
		let output = "";
		child.stdout?.on("data", d => (output += d));
		let settled = false;
		const finish = code => {
			if (settled) return;
			settled = true;
			clearTimeout(timer);
			clearInterval(watcher);
			resolve({ code, output });
		};
		const timer = setTimeout(() => {
			console.error(`run-tests: ${cmd} ${args.join(" ")} still running after ${STEP_TIMEOUT_MS / 1000} s; stopping it`);
			child.kill("SIGKILL");
			finish("timeout");
		}, STEP_TIMEOUT_MS);
		let seenAt = 0;
		const watcher = watchFile
			? setInterval(() => {
					if (!seenAt && existsSync(watchFile)) seenAt = Date.now();
					if (seenAt && Date.now() - seenAt > EXIT_GRACE_MS) {
						console.error(`run-tests: WARNING jest wrote its results but did not exit within ${EXIT_GRACE_MS / 1000} s (open handles: run with --detectOpenHandles); stopping it`);
						child.kill("SIGKILL");
						finish("hung");
					}
				}, 500)
			: undefined;
		child.on("error", err => {
			console.error(`run-tests: cannot run ${cmd}: ${err.message}`);
			finish(err.code === "ENOENT" ? "missing" : "error");
		});
		child.on("exit", code => finish(code));
	});
}

async function runCheck(name) {
	const check = CHECKS[name];
	if (name === "stack" && !CI) {
		const probe = await run("docker", ["stack", "config", "--help"], { quiet: true });
		if (probe.code !== 0) return { name, skipped: "docker CLI with `stack config` not found (required when CI=true)" };
	}
	if (check.tool && !CI) {
		const probe = await run(check.tool, ["--version"], { quiet: true });
		if (probe.code !== 0) return { name, skipped: `${check.tool} not found (apt-get install prometheus; required when CI=true)` };
	}
	const started = Date.now();
	const { code } = await run(check.cmd[0], check.cmd.slice(1), { quiet: check.quiet });
	const ok = code === 0;
	return { name, passed: ok ? 1 : 0, failed: ok ? 0 : 1, ms: Date.now() - started, note: ok ? check.what : `${check.what} exited with ${code}` };
}

async function runTier(name, workDir) {
	const outputFile = join(workDir, `${name}.json`);
	const args = ["--selectProjects", name, "--json", "--outputFile", outputFile, "--passWithNoTests", ...TIERS[name]];
	if (CI) args.push("--ci");
	const started = Date.now();
	const { code } = await run(join(BIN, "jest"), args, { watchFile: outputFile });
	const ms = Date.now() - started;
	if (!existsSync(outputFile)) {
		return { name, passed: 0, failed: 1, ms, note: `jest exited with ${code} without writing results (counted as 1 failed)` };
	}
	const r = JSON.parse(readFileSync(outputFile, "utf8"));
	// Files that failed to run report no tests of their own; count each as one failure.
	const brokenFiles = r.testResults.filter(t => t.status === "failed" && t.assertionResults.length === 0);
	const passed = r.numPassedTests;
	let failed = r.numFailedTests + brokenFiles.length;
	const notes = [`${r.numTotalTestSuites} files`];
	if (r.numPendingTests + r.numTodoTests) notes.push(`${r.numPendingTests + r.numTodoTests} skipped/todo`);
	if (brokenFiles.length) notes.push(`${brokenFiles.length} file(s) failed to run: ${brokenFiles.map(t => t.name.replace(`${ROOT}/`, "")).join(", ")}`);
	if (r.numTotalTestSuites === 0) notes.push("no test files yet");
	if (failed === 0 && code !== 0 && code !== "hung") {
		failed = 1;
		notes.push(`jest exited with ${code} although no test failed (counted as 1 failed)`);
	}
	if (code === "hung") notes.push("did not exit after finishing (open handles)");
	return { name, passed, failed, ms, note: notes.join("; ") };
}

async function main() {
	const steps = parseArgs(process.argv.slice(2));
	const workDir = mkdtempSync(join(tmpdir(), "mc-run-tests-"));
	const results = [];
	try {
		for (const name of steps) {
			console.log(`\n=== ${name} ===`);
			results.push(name in CHECKS ? await runCheck(name) : await runTier(name, workDir));
		}
	} finally {
		rmSync(workDir, { recursive: true, force: true });
	}

	const sum = (list, key) => list.reduce((n, r) => n + (r[key] ?? 0), 0);
	const jestResults = results.filter(r => r.name in TIERS);
	const checkResults = results.filter(r => r.name in CHECKS && !r.skipped);
	console.log("\n=== summary ===");
	for (const r of results) {
		if (r.skipped) console.log(`${r.name.padEnd(12)} SKIPPED   ${r.skipped}`);
		else console.log(`${r.name.padEnd(12)} ${String(r.passed).padStart(4)} passed ${String(r.failed).padStart(3)} failed  ${(r.ms / 1000).toFixed(1).padStart(6)} s  ${r.note}`);
	}
	console.log(
		`jest tiers: ${sum(jestResults, "passed")} passed, ${sum(jestResults, "failed")} failed; ` +
			`checks (one test each: ${checkResults.map(r => r.name).join(", ") || "none"}): ${sum(checkResults, "passed")} passed, ${sum(checkResults, "failed")} failed`,
	);
	const failed = sum(results, "failed");
	console.log(`tests: ${sum(results, "passed")} passed, ${failed} failed`);
	process.exitCode = failed > 0 ? 1 : 0;
}

main().catch(err => {
	console.error("run-tests crashed:", err);
	console.log("tests: 0 passed, 1 failed");
	process.exitCode = 1;
});
