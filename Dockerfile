# The sched image: the engine (`manage.py runengine`) and workers (`python -m sdk.worker`).
# compose.yaml builds it; see the README's "compose.yaml" section.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SCHED_DATA_DIR=/app/data

WORKDIR /app
COPY . .
RUN pip install . \
    && useradd --system --home-dir /app sched \
    && mkdir -p /app/data /run/sched \
    && chown sched /app/data /run/sched
USER sched

EXPOSE 8000
CMD ["python", "manage.py", "runengine", "--host", "0.0.0.0", "--port", "8000"]
