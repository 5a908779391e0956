# syntax=docker/dockerfile:1
# One image for every service; SERVICES chooses which ones a container runs (see deploy/docker-stack.yml).
#   docker build -t moleculer-commerce .
#   docker run --rm -p 3000:3000 -e JWT_SECRET=... -e ADMIN_PASSWORD=... moleculer-commerce   (embedded, SQLite)

ARG NODE_IMAGE=node:22-bookworm-slim

# ---- build: dev dependencies, native addons compiled against this image's Node, TypeScript -> dist/
FROM ${NODE_IMAGE} AS build
# node-gyp needs these when sqlite3 has no prebuilt binary to download.
RUN apt-get update \
	&& apt-get install -y --no-install-recommends python3 make g++ \
	&& rm -rf /var/lib/apt/lists/*
WORKDIR /app
# The image's own headers, never a host's nodedir or a download.
ENV npm_config_nodedir=/usr/local
COPY package.json package-lock.json .npmrc ./
RUN npm ci --no-audit --no-fund \
	&& node -e "new (require('sqlite3').Database)(':memory:').close()"
COPY tsconfig.json tsconfig.build.json moleculer.config.ts ./
COPY types ./types
COPY config ./config
COPY lib ./lib
COPY mixins ./mixins
COPY services ./services
COPY bin ./bin
RUN npm run build \
	&& npm prune --omit=dev --no-audit --no-fund \
	&& mkdir -p /app/data

# ---- runtime: production dependencies and dist/ only
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
	PORT=3000 \
	METRICS_PORT=3030 \
	METRICS_HOST=127.0.0.1 \
	DATA_DIR=/app/data
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# The embedded default keeps SQLite files (and generated secrets when none are given) here.
COPY --from=build --chown=node:node /app/data ./data
VOLUME ["/app/data"]
# The official image's unprivileged user.
USER node
EXPOSE 3000 3030
# Every node: GET /health/ready on its metrics port — its databases, transporter and the services it
# needs (bin/healthcheck.ts, lib/readiness.ts); a failing new task makes a rolling update roll back.
HEALTHCHECK --interval=10s --timeout=4s --start-period=40s --retries=3 CMD ["node", "dist/bin/healthcheck.js"]
# node itself is PID 1 and the broker handles SIGTERM/SIGINT: in-flight requests finish, then exit.
CMD ["node", "dist/bin/start.js"]
