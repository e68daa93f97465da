# The VA Signals code location image: serves definitions over gRPC to the Dagster webserver and
# daemon, and is the image the Kubernetes run launcher starts for each run.
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DAGSTER_DISABLE_TELEMETRY=1 \
    DO_NOT_TRACK=1 \
    GX_ANALYTICS_ENABLED=false

WORKDIR /opt/va-signals
RUN useradd --system --create-home --uid 10001 vasignals

COPY pyproject.toml README.md ./
COPY va_signals ./va_signals
RUN pip install --upgrade pip && pip install . "dagster-postgres~=0.29.0" "dagster-k8s~=0.29.0"

COPY workspace.yaml ./
USER vasignals

# Production points DATABASE_URL at Cloud SQL; the embedded server is for laptops only.
EXPOSE 4000
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "va_signals.definitions"]
