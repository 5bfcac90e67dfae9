# One image for every Node process of Woodytoys (broker, catalog, orders, stock, workers, ERP
# sandbox); compose picks the process with `command`. Multi-stage: the build stage compiles
# TypeScript and the native SQLite addon, the runtime stage (the last, the default target) has
# production dependencies only. The `gateway` target is nginx with the dashboard and nginx.conf.

FROM node:24-bookworm-slim AS build
WORKDIR /app
# better-sqlite3 builds from source when no prebuilt binary matches.
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
# Its `prepare` script also writes the dashboard's browser modules to dashboard/vendor/.
RUN npm ci --no-audit --no-fund
COPY dashboard dashboard
COPY tsconfig.json tsconfig.build.json nginx.conf ./
COPY lib lib
COPY broker broker
COPY api api
COPY workers workers
COPY sandbox sandbox
COPY scripts scripts
COPY gateway gateway
# `npm run build` also copies what the compiled code reads beside itself (the broker's ACL).
RUN npm run build && npm prune --omit=dev

# The gateway: the official nginx image renders templates/*.template with envsubst at start
# (compose.yaml gives it the variables), and serves the dashboard with the modules npm ci vendored
# above: a fresh clone needs nothing built on the host.
FROM nginx:1.27-alpine AS gateway
COPY nginx.conf /etc/nginx/templates/nginx.conf.template
COPY --from=build /app/dashboard /usr/share/nginx/html

FROM node:24-bookworm-slim
# NODE_ENV=production is how a process knows it runs in a container: it then refuses a secret that
# is short or still .env.example's placeholder, naming the variable (lib/config.ts).
ENV NODE_ENV=production \
    DATA_DIR=/data \
    HTTP_HOST=0.0.0.0
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules node_modules
COPY --from=build /app/dist dist
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME ["/data"]
# Exec form: node runs as PID 1 and receives SIGTERM itself; every process handles it (lib/shutdown.ts).
CMD ["node", "dist/api/orders/main.js"]
