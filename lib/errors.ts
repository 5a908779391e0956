/**
 * Typed errors. Client errors (4xx) carry a stable `type`; `MoleculerRetryableError`s are the
 * only ones the broker's retry policy retries.
 */
import { Errors } from "moleculer";

const { MoleculerClientError, MoleculerRetryableError } = Errors;

export interface FieldProblem {
	field: string;
	message: string;
}

export class NotFoundError extends MoleculerClientError {
	constructor(what: string, type = "NOT_FOUND") {
		super(`${what} not found`, 404, type);
		this.name = "NotFoundError";
	}
}

export class ConflictError extends MoleculerClientError {
	constructor(message: string, type: string, data?: unknown) {
		super(message, 409, type, data);
		this.name = "ConflictError";
	}
}

export class ForbiddenError extends MoleculerClientError {
	constructor(message = "Not allowed", type = "FORBIDDEN") {
		super(message, 403, type);
		this.name = "ForbiddenError";
	}
}

export class UnauthorizedError extends MoleculerClientError {
	constructor(message = "Authentication required", type = "UNAUTHORIZED") {
		super(message, 401, type);
		this.name = "UnauthorizedError";
	}
}

/** 422 with the same `data` shape as the parameter validator's errors. */
export class UnprocessableError extends MoleculerClientError {
	constructor(message: string, type = "VALIDATION_ERROR", data: FieldProblem[] = []) {
		super(message, 422, type, data);
		this.name = "ValidationError";
	}
}

export class BadRequestError extends MoleculerClientError {
	constructor(message: string, type = "BAD_REQUEST") {
		super(message, 400, type);
		this.name = "BadRequestError";
	}
}

/** A dependency could not answer; retrying later makes sense. */
export class DependencyUnavailableError extends MoleculerRetryableError {
	constructor(message: string, type = "SERVICE_UNAVAILABLE", data?: unknown) {
		super(message, 503, type, data);
		this.name = "DependencyUnavailableError";
	}
}
