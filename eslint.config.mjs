// Flat config: the TypeScript-aware recommended rules, tuned for a Moleculer code base.
import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
	{ ignores: ["dist/**", "node_modules/**", "coverage/**", "data/**", ".tools/**"] },
	js.configs.recommended,
	...tseslint.configs.recommended,
	{
		rules: {
			// Moleculer schemas are loosely typed at the edges; an explicit `any` there is deliberate.
			"@typescript-eslint/no-explicit-any": "off",
			"@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
			// STYLE.md habit 7: no silent failure.
			"no-empty": ["error", { allowEmptyCatch: false }],
			"@typescript-eslint/no-require-imports": "off",
		},
	},
	{
		files: ["**/*.mjs", "**/*.js"],
		languageOptions: { globals: { process: "readonly", console: "readonly" } },
	},
	{
		// CommonJS config files (jest.config.js).
		files: ["**/*.js"],
		languageOptions: { sourceType: "commonjs", globals: { module: "writable", require: "readonly", __dirname: "readonly" } },
	},
);
