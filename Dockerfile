# The activity-sync workers' image (docker-compose.yml builds it).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY sinks ./sinks
COPY schemas ./schemas
COPY activity_sync ./activity_sync
COPY deploy ./deploy
RUN pip install --no-cache-dir .
ENV ACTIVITY_SYNC_METRICS_HOST=0.0.0.0 \
    ACTIVITY_SYNC_CONFIG=/app/deploy/compose-config.yaml
ENTRYPOINT ["activity-sync"]
