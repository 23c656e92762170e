# MLflow tracking server for docker-compose.yml: the official image plus the two
# drivers it lacks, psycopg 3 (postgresql+psycopg://) and boto3 (s3:// artifacts).
# Versions match constraints.txt, so the server runs what the client is tested with.
FROM ghcr.io/mlflow/mlflow:v3.17.2

# mlflow is named again so pip cannot move it while resolving the drivers.
RUN pip install --no-cache-dir --disable-pip-version-check \
        "mlflow==3.17.2" \
        "psycopg[binary]==3.3.9" \
        "boto3==1.44.8" \
    && useradd --create-home --uid 1000 --shell /usr/sbin/nologin mlflow

ENV MLFLOW_DISABLE_TELEMETRY=true \
    PYTHONUNBUFFERED=1

# The server keeps no state on disk (PostgreSQL + S3); it only needs a writable home.
# Numeric, so runtimes that enforce non-root (runAsNonRoot) can check it.
USER 1000:1000
WORKDIR /home/mlflow
EXPOSE 5000

# Reset whatever entrypoint the base image may set; compose passes the full command.
ENTRYPOINT []
CMD ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000"]
