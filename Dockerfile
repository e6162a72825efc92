# tgfleet: one image for every process (listener, workers, beat, flower, migrate, CLI).
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN useradd --create-home --uid 10001 tgfleet
WORKDIR /app
COPY pyproject.toml README.md celeryconfig.py alembic.ini ./
COPY tgfleet ./tgfleet
COPY migrations ./migrations
RUN pip install .
USER tgfleet
ENTRYPOINT []
CMD ["tgfleet", "--help"]
