# The gateway as a container: locked dependencies, no dev tools, a non-root user.
FROM python:3.11-slim AS build
COPY --from=ghcr.io/astral-sh/uv:0.13.8 /uv /usr/local/bin/uv
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
COPY gateway ./gateway
COPY policies ./policies
RUN uv sync --locked --no-dev --no-editable

FROM python:3.11-slim
# OPA compiles a policy folder to WebAssembly at start and on reload (policy.path); a
# gateway that serves prebuilt bundles (policy.bundle) does not need it.
COPY --from=openpolicyagent/opa:1.22.0-static /opa /usr/local/bin/opa
# The folders the Helm chart and compose mount (keys, data, checkpoints) exist owned by
# the gateway's user, so a named volume mounted there starts writable by it.
RUN groupadd --system --gid 10001 gateway && useradd --system --uid 10001 --gid 10001 gateway \
    && mkdir -p /var/lib/gateway/keys /var/lib/gateway/data /var/lib/gateway/checkpoints \
       /etc/gateway/config \
    && chown -R gateway /var/lib/gateway
COPY --from=build /app/.venv /app/.venv
COPY --from=build /app/policies /etc/gateway/policies
ENV PATH=/app/.venv/bin:$PATH
# Every command (`gateway db migrate`, `gateway audit …`) finds the config without --config.
ENV GATEWAY_CONFIG=/etc/gateway/config/gateway.yaml
# Numeric, so Kubernetes can tell runAsNonRoot holds without a runAsUser.
USER 10001
EXPOSE 8080
ENTRYPOINT ["gateway"]
CMD ["serve", "--config", "/etc/gateway/config/gateway.yaml"]
