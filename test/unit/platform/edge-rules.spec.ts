/**
 * Pure rules of the gateway and the identity layer found by attacking the running platform
 * (issue 9, second round): headers sent twice, query strings that do not decode, one name from
 * two places, numbers in query strings, look-alike emails.
 */
import argon2 from "argon2";
import { emailProblem, mixesScripts } from "../../../lib/identity/email";
import { parseJsonBody, roundedToWhole } from "../../../lib/http-body";
import { malformedQueryPiece, paramConflicts, repeatedHeader } from "../../../lib/http-edge";
import { hashPassword, verifyPassword } from "../../../lib/passwords";
import { DECIMAL_TEXT, StrictValidator } from "../../../lib/validator";

describe("headers a request may carry once", () => {
	it("finds a repeated Authorization, Content-Type or Idempotency-Key whatever its case, and lets repeatable ones be", () => {
		expect(repeatedHeader(["Authorization", "Bearer a", "authorization", "Bearer b"])).toBe("authorization");
		expect(repeatedHeader(["Content-Type", "application/json", "Accept", "x", "CONTENT-TYPE", "text/plain"])).toBe("content-type");
		expect(repeatedHeader(["Idempotency-Key", "a", "Idempotency-Key", "b"])).toBe("idempotency-key");
		expect(repeatedHeader(["Accept", "a", "Accept", "b", "Cookie", "x", "Cookie", "y", "Authorization", "Bearer a"])).toBeUndefined();
	});
});

describe("query strings", () => {
	it("finds percent-encoding that is not UTF-8, in keys and values", () => {
		expect(malformedQueryPiece("brand=%E0%A4%A")).toBe("%E0%A4%A");
		expect(malformedQueryPiece("q=%C0%AE&page=1")).toBe("%C0%AE");
		expect(malformedQueryPiece("%ff=1")).toBe("%ff");
		expect(malformedQueryPiece("q=caf%C3%A9+au+lait&brand=a%2Fb&x=")).toBeUndefined();
	});

	it("takes decimal numbers as JSON writes them, nothing Number() also takes", () => {
		for (const good of ["0", "12", "-3", "1.5", "1e3", "25.0E2", "1e+20"]) expect([good, DECIMAL_TEXT.test(good)]).toEqual([good, true]);
		for (const bad of ["", " 1", "1 ", "0x10", "0b1", "+5", "1_000", "1e", ".5", "Infinity", "NaN", "1,5"]) expect([bad, DECIMAL_TEXT.test(bad)]).toEqual([bad, false]);
	});

	it("refuses non-decimal text in a converted number and drops an empty optional one", () => {
		const check = new (StrictValidator as any)().compile({ page: "number|integer|convert|optional", min: { type: "number", convert: true } });
		expect(check({ page: "0x10", min: "1" })).toEqual([expect.objectContaining({ field: "page", message: "The 'page' field must be a decimal number." })]);
		const params: Record<string, unknown> = { page: "", min: "2" };
		expect(check(params)).toBe(true);
		expect(params).toEqual({ min: 2 });
		expect(check({ min: "" })).not.toBe(true);
	});
});

describe("one name from one place", () => {
	it("names what two of path, query and body both give", () => {
		expect(paramConflicts({ path: ["id"], query: {}, body: { id: "b", name: "x" } })).toEqual(["id"]);
		expect(paramConflicts({ path: [], query: { productId: "b" }, body: { productId: "a", quantity: 1 } })).toEqual(["productId"]);
		expect(paramConflicts({ path: ["productId"], query: { productId: "b" }, body: undefined })).toEqual(["productId"]);
		expect(paramConflicts({ path: ["id"], query: { page: "1" }, body: { amount: 5 } })).toEqual([]);
	});
});

describe("look-alike emails", () => {
	it("refuses a local part or label mixing scripts, and compatibility characters", () => {
		expect(mixesScripts("h\u043emer")).toBe(true);
		expect(mixesScripts("homer")).toBe(false);
		expect(mixesScripts("\u5c71\u7530\u30bf\u30ed\u30a6")).toBe(false);
		expect(mixesScripts("\u0438\u0432\u0430\u043d-2")).toBe(false);
		expect(emailProblem("h\u043emer@example.com")).toMatch(/mix scripts/);
		expect(emailProblem("homer@\u0435xample.com")).toMatch(/mix scripts/);
		expect(emailProblem("\uff48omer@example.com")).toMatch(/compatibility characters/);
		expect(emailProblem("homer\ufb01@example.com")).toMatch(/compatibility characters/);
		expect(emailProblem("zo\u00eb@example.com")).toBeNull();
		expect(emailProblem("\u0438\u0432\u0430\u043d@\u043f\u0440\u0438\u043c\u0435\u0440.\u0440\u0444")).toBeNull();
	});
});

describe("JSON numbers that would arrive as other whole numbers", () => {
	it("refuses text that is not whole but parses to a whole number, and keeps whole and fractional ones as sent", () => {
		for (const bad of ["1.0000000000000001", "0.99999999999999999", "1e-400", "-2.00000000000000001", "12345678901234.0000001"]) {
			expect([bad, roundedToWhole(Number(bad), bad)]).toEqual([bad, true]);
			expect(() => parseJsonBody(`{"quantity": ${bad}}`, 16)).toThrow(expect.objectContaining({ code: 422 }));
		}
		for (const good of ["1", "1.0", "1.5e1", "2e2", "0.5", "0.1", "-0", "1e20", "100.000"]) expect([good, roundedToWhole(Number(good), good)]).toEqual([good, false]);
		expect(parseJsonBody('{"a": 1.0, "b": 1.5e1, "c": 0.1}', 16)).toEqual({ a: 1, b: 15, c: 0.1 });
	});
});

describe("passwords in any Unicode spelling", () => {
	it("takes the NFD spelling of an NFC password and the other way round, and still verifies hashes of the text as sent", async () => {
		const nfc = "pa\u00dfwort-\u00e9t\u00e9";
		const nfd = "pa\u00dfwort-e\u0301te\u0301";
		expect(await verifyPassword(await hashPassword(nfc), nfd)).toBe(true);
		expect(await verifyPassword(await hashPassword(nfd), nfc)).toBe(true);
		const legacy = await argon2.hash(nfd, { type: argon2.argon2id });
		expect(await verifyPassword(legacy, nfd)).toBe(true);
		expect(await verifyPassword(legacy, "pa\u00dfwort-ete")).toBe(false);
	});
});
