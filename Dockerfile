# syntax=docker/dockerfile:1
#
# ipvs-janitor image: a Node 20 agent that talks generic netlink (IPVS) to the kernel through koffi.
#
#   docker build -t ipvs-janitor:0.1.0 .
#
# The chart (charts/ipvs-janitor) runs it as a DaemonSet with hostNetwork.

# ---- build: compile TypeScript (src/ and native/ -> dist/src and dist/native) ----
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci
COPY tsconfig.json ./
COPY src ./src
COPY native ./native
RUN npm run build

# ---- runtime: production dependencies and the compiled product only (no tests, no sources) ----
FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev && npm cache clean --force
COPY --from=build /app/dist/src ./dist/src
COPY --from=build /app/dist/native ./dist/native
# The agent runs as root on purpose: deleting IPVS real servers over netlink
# needs CAP_NET_ADMIN in the host network namespace, and a non-root UID does not keep that capability
# across exec without file capabilities on the node binary (which would then grant it to any script).
# The chart's securityContext.mode=netAdmin drops every other capability and makes the root fs read-only.
USER root
ENTRYPOINT ["node", "/app/dist/src/cli/main.js"]
CMD ["run"]
