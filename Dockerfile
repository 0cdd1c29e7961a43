FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md main.py ./
COPY domain domain
COPY commands commands
COPY eventstore eventstore
COPY projections projections
COPY queries queries
COPY web web
COPY migrations migrations
RUN pip install --no-cache-dir . && useradd --system --uid 10001 energy
USER energy
EXPOSE 3000
CMD ["energy", "serve", "--bind", "0.0.0.0:3000"]
