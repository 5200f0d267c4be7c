# clip-audit-bot: one image for every command (watch, worker, serve, scan, site build...); entrypoint `clip-audit`.
#
#   docker build -t clip-audit-bot .          # docs/deployment.md: running it, state, binding, GPUs
#
# One CUDA runtime: torch's wheel from PyPI brings its own CUDA libraries (the nvidia-* wheels it depends on), so
# the base is a plain Python image; a CUDA base image would add a second runtime that nothing uses. The GPU
# driver comes from the host (`docker run --gpus all`, the NVIDIA Container Toolkit); without a GPU the detector
# runs on the CPU.

ARG PYTHON_VERSION=3.11

# The wheel, built from the sources: what `pip install` gets, templates and data files included (setup.py).
FROM python:${PYTHON_VERSION}-slim-bookworm AS wheel
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY bot ./bot
COPY hub_emulator ./hub_emulator
COPY templates ./templates
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:${PYTHON_VERSION}-slim-bookworm
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 HF_HUB_DISABLE_TELEMETRY=1 \
    VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH
COPY --from=wheel /wheels /wheels
RUN python -m venv /opt/venv && pip install /wheels/*.whl && rm -rf /wheels

# The bot never needs root. Everything it writes (the state database, downloads, calibrations, the outbox, the
# report site, huggingface_hub's own files) goes under /data, owned by its user: mount a volume there. The
# working directory is /data too, so ./clip-audit.toml there is read and relative paths land there.
RUN useradd --create-home --uid 10001 audit && mkdir -p /data && chown audit:audit /data
USER audit
WORKDIR /data
# serve listens on every interface of the container (its default, 127.0.0.1, is unreachable from outside it);
# publish the port on the host's loopback behind a TLS proxy, or on a private network.
ENV HF_HOME=/data/hf CLIP_AUDIT_DB_PATH=/data/state.db CLIP_AUDIT_CACHE_DIR=/data/hub \
    CLIP_AUDIT_OUTBOX_DIR=/data/outbox CLIP_AUDIT_ANCHOR_CACHE=/data CLIP_AUDIT_WEBHOOK_HOST=0.0.0.0
VOLUME ["/data"]
# serve's port (the webhook_port setting).
EXPOSE 8080
# GET /health of a container running serve; containers running another command pass (bot/healthcheck.py).
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["python", "-m", "bot.healthcheck"]
ENTRYPOINT ["clip-audit"]
CMD ["--help"]
