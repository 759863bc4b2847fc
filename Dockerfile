# The system under test (operation server + worker; one image, two commands). Build context: the repository root.
#   docker build -t verisim/system:dev .            (docker compose builds it for the api and worker services)
# Offline, `nox -s images -- system` builds it on verisim/python:3.11-bookworm with the CPU torch wheel from this disk.
ARG BASE=python:3.11-slim
FROM ${BASE}
# where pip finds a CPU build of torch (a plain `pip install torch` pulls a multi-GB CUDA build); empty: PyPI only
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
# .docker/ carries build-time extras (ca.crt where egress is TLS-intercepted, wheels/ found on the build host)
COPY .docker/ /tmp/build/
RUN set -eux; if [ -s /tmp/build/ca.crt ]; then export PIP_CERT=/tmp/build/ca.crt; fi; \
    mkdir -p /tmp/build/wheels; \
    pip install --no-cache-dir --find-links /tmp/build/wheels ${TORCH_INDEX:+--extra-index-url "$TORCH_INDEX"} torch==2.13.0
COPY pyproject.toml README.md /app/
COPY system/ /app/system/
RUN set -eux; if [ -s /tmp/build/ca.crt ]; then export PIP_CERT=/tmp/build/ca.crt; fi; \
    pip install --no-cache-dir --find-links /tmp/build/wheels /app; \
    pip install --no-cache-dir --no-deps tinysoundfont==0.3.7; \
    rm -rf /tmp/build
EXPOSE 8000
CMD ["python", "-m", "system.api", "--host", "0.0.0.0", "--port", "8000"]
