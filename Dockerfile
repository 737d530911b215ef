# syntax=docker/dockerfile:1
# Build stage: compile TypeScript with the full dependency set.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# patch-package applies patches/ at install (postgres.js: see patches/README.md).
COPY patches ./patches
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY drizzle ./drizzle
RUN npm run build && npm prune --omit=dev

# Runtime stage: compiled code, production dependencies and migrations, run as an unprivileged user.
FROM node:20-bookworm-slim
# The data directory (lock file; the secret key and embedded servers when no URLs are given) is the one
# place the unprivileged user writes.
ENV NODE_ENV=production HOST=0.0.0.0 PORT=8080 WORKER_HEALTH_PORT=8081 IDSYNC_DATA_DIR=/data
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/drizzle ./drizzle
COPY package.json ./
RUN mkdir -p /data && chown node:node /data
VOLUME /data
USER node
EXPOSE 8080 8081
# `serve` answers /healthz on PORT, `worker` on WORKER_HEALTH_PORT: the check reads this container's
# command (PID 1) to ask the right one, so one image serves both compose services.
HEALTHCHECK --interval=15s --timeout=3s CMD node -e "const worker=require('fs').readFileSync('/proc/1/cmdline','utf8').split('\0').includes('worker');fetch('http://127.0.0.1:'+(worker?process.env.WORKER_HEALTH_PORT:process.env.PORT)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
ENTRYPOINT ["node", "dist/cli/main.js"]
CMD ["serve"]
