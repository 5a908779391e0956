/** The part of node-postgres the platform uses directly (Sequelize drives the rest); pg ships no types. */
declare module "pg" {
	const pg: { types: { setTypeParser(oid: number, parse: (text: string) => unknown): void } };
	export default pg;
}
