import { readFileSync } from "node:fs";
import { join } from "node:path";
import { GROUPS } from "../../../bin/cluster";
import { SERVICE_FILES } from "../../../services";

const stackFile = readFileSync(join(__dirname, "../../../deploy/docker-stack.yml"), "utf8");

describe("deployment topology", () => {
	it("puts every service of the platform in exactly one cluster group", () => {
		const grouped = GROUPS.flatMap(g => g.services).sort();
		expect(grouped).toEqual(Object.keys(SERVICE_FILES).sort());
	});

	it("runs the same service groups in the Swarm stack as in npm run cluster", () => {
		const stackGroups = [...stackFile.matchAll(/^ {2}([a-z]+):\n(?:(?! {2}\S).*\n)*? {6}SERVICES: (\S+)$/gm)].map(m => ({
			name: m[1],
			services: m[2].split(","),
		}));
		expect(stackGroups).toEqual(GROUPS);
	});

	it("gives every service node of the stack the secrets as files, never as values", () => {
		expect(stackFile).not.toMatch(/^\s+(JWT_SECRET|ADMIN_PASSWORD|DATABASE_URL):/m);
		expect(stackFile).toMatch(/JWT_SECRET_FILE: \/run\/secrets\/mc_jwt_secret/);
		expect(stackFile).toMatch(/ADMIN_PASSWORD_FILE: \/run\/secrets\/mc_admin_password/);
		expect(stackFile).toMatch(/DATABASE_URL_FILE: \/run\/secrets\/mc_database_url/);
	});
});
