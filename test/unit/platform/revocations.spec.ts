/**
 * The gateway's revocation list (lib/identity/revocations.ts) with a fake broker and clock: a
 * revocation is refused from the broadcast, or from the next look at auth when the broadcast was
 * missed; past the bound without a successful look, each request asks auth again.
 */
import { REVOCATION_BOUND_MS, RevocationList, SYNC_EVERY_MS } from "../../../lib/identity/revocations";

function fakeBroker(revoked: { sid: string; revokedAt: number }[], clock: { now: number }, authUp = { up: true }) {
	return {
		registry: { hasService: () => true },
		logger: { debug: () => undefined },
		call: jest.fn(async (action: string, params: any) => {
			if (!authUp.up) throw new Error("auth unreachable");
			if (action === "auth.revokedSince") return { items: revoked.filter(r => r.revokedAt >= params.since), now: clock.now };
			throw new Error(`unexpected ${action}`);
		}),
	};
}

describe("RevocationList", () => {
	const ctx = (answer: boolean) => ({ call: jest.fn(async () => answer) }) as any;

	it("refuses a session auth does not know, and one named by the broadcast at once", async () => {
		const unknown = new RevocationList(fakeBroker([], { now: 0 }) as any, 905_000, () => 0);
		expect(await unknown.isActive(ctx(false), "never-was")).toBe(false);
	});

	it("asks auth once per session, then refuses it from the broadcast without asking", async () => {
		const clock = { now: 1_000_000 };
		const list = new RevocationList(fakeBroker([], clock) as any, 905_000, () => clock.now);
		await list.sync();
		const c = ctx(true);
		expect(await list.isActive(c, "s1")).toBe(true);
		expect(await list.isActive(c, "s1")).toBe(true);
		// Asked once, then known.
		expect(c.call).toHaveBeenCalledTimes(1);
		list.add(["s1"], clock.now);
		expect(await list.isActive(c, "s1")).toBe(false);
		expect(c.call).toHaveBeenCalledTimes(1);
	});

	it("catches a missed broadcast at the next look, within the bound", async () => {
		const clock = { now: 1_000_000 };
		const revoked: { sid: string; revokedAt: number }[] = [];
		const list = new RevocationList(fakeBroker(revoked, clock) as any, 905_000, () => clock.now);
		await list.sync();
		expect(await list.isActive(ctx(true), "s2")).toBe(true);
		clock.now += 10;
		revoked.push({ sid: "s2", revokedAt: clock.now });
		clock.now += SYNC_EVERY_MS;
		await list.sync();
		expect(await list.isActive(ctx(true), "s2")).toBe(false);
	});

	it("asks auth per request once its last look is older than the bound allows, and trusts the list again after a look", async () => {
		const clock = { now: 1_000_000 };
		const auth = { up: true };
		const list = new RevocationList(fakeBroker([], clock, auth) as any, 905_000, () => clock.now);
		await list.sync();
		auth.up = false;
		clock.now += REVOCATION_BOUND_MS;
		await list.sync();
		expect(list.isFresh()).toBe(false);
		const c = ctx(false);
		expect(await list.isActive(c, "s3")).toBe(false);
		expect(c.call).toHaveBeenCalledWith("auth.sessionActive", { sid: "s3" });
		auth.up = true;
		await list.sync();
		expect(await list.isActive(ctx(true), "s4")).toBe(true);
		const again = ctx(false);
		expect(await list.isActive(again, "s4")).toBe(true);
		expect(again.call).not.toHaveBeenCalled();
	});

	it("forgets revocations older than an access token can live", async () => {
		const clock = { now: 1_000_000 };
		const list = new RevocationList(fakeBroker([], clock) as any, 10_000, () => clock.now);
		list.add(["old"], clock.now);
		clock.now += 10_001;
		await list.sync();
		expect(list.size).toBe(0);
	});
});

describe("RevocationList against auth's page limit (adversary)", () => {
	it("catches a missed revocation behind more than one page (5000) of revocations since the last look", async () => {
		const clock = { now: 1_000_000 };
		const revoked: { sid: string; revokedAt: number }[] = [];
		// As auth.revokedSince: oldest first, at most 5000.
		const broker = {
			registry: { hasService: () => true },
			logger: { debug: () => undefined },
			call: jest.fn(async (_action: string, params: any) => ({ items: revoked.filter(r => r.revokedAt >= params.since).slice(0, 5000), now: clock.now })),
		};
		const list = new RevocationList(broker as any, 905_000, () => clock.now);
		await list.sync();
		expect(await list.isActive({ call: jest.fn(async () => true) } as any, "victim")).toBe(true);
		// A burst of logouts whose broadcasts this replica missed (it was disconnected), the victim's last.
		for (let i = 0; i < 6000; i++) revoked.push({ sid: `other-${i}`, revokedAt: clock.now + 1 + Math.floor(i / 10) });
		revoked.push({ sid: "victim", revokedAt: clock.now + 700 });
		clock.now += SYNC_EVERY_MS;
		await list.sync();
		clock.now += SYNC_EVERY_MS;
		await list.sync();
		expect(await list.isActive({ call: jest.fn(async () => true) } as any, "victim")).toBe(false);
	});
});
