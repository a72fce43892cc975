# The activity-sync workers' image (docker-compose.yml builds it; deploy/kubernetes runs it).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY core ./core
COPY streams ./streams
COPY sinks ./sinks
COPY schemas ./schemas
COPY activity_sync ./activity_sync
COPY deploy ./deploy
RUN pip install --no-cache-dir '.[all]' \
    && groupadd --system --gid 10001 activity-sync \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --create-home activity-sync
USER 10001:10001
ENV ACTIVITY_SYNC_METRICS_HOST=0.0.0.0 \
    ACTIVITY_SYNC_METRICS_PORT=6066 \
    ACTIVITY_SYNC_DATADIR=/data \
    ACTIVITY_SYNC_CONFIG=/app/deploy/compose-config.yaml \
    PYTHONUNBUFFERED=1
EXPOSE 6066
# A worker's liveness: its event loop answers /healthz (the fake CRM and one-off commands override it).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('ACTIVITY_SYNC_METRICS_PORT', '6066'), timeout=4)"
ENTRYPOINT ["activity-sync"]
