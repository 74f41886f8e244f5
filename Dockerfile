# The gateway as a container: locked dependencies, no dev tools, a non-root user.
FROM python:3.11-slim AS build
COPY --from=ghcr.io/astral-sh/uv:0.13.8 /uv /usr/local/bin/uv
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
COPY gateway ./gateway
COPY policies ./policies
RUN uv sync --locked --no-dev --no-editable

FROM python:3.11-slim
RUN useradd --system --uid 10001 gateway && mkdir -p /var/lib/gateway/keys \
    && chown -R gateway /var/lib/gateway
COPY --from=build /app/.venv /app/.venv
COPY --from=build /app/policies /etc/gateway/policies
ENV PATH=/app/.venv/bin:$PATH
USER gateway
EXPOSE 8080
ENTRYPOINT ["gateway"]
CMD ["serve", "--config", "/etc/gateway/gateway.yaml"]
