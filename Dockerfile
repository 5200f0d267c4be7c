# clip-audit-bot on a CUDA runtime: the detector uses the GPU when one is visible, the CPU otherwise.
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1 HF_HUB_DISABLE_TELEMETRY=1 \
    VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-pip ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/venv

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY templates ./templates
COPY hub_emulator ./hub_emulator
RUN pip install --no-cache-dir -e .

# The bot never needs root; it keeps state and downloads under /data.
RUN useradd --create-home --uid 10001 audit && mkdir -p /data && chown audit /data
USER audit
ENV CLIP_AUDIT_DB_PATH=/data/state.db CLIP_AUDIT_CACHE_DIR=/data/hub CLIP_AUDIT_OUTBOX_DIR=/data/outbox
VOLUME ["/data"]
ENTRYPOINT ["clip-audit"]
CMD ["--help"]
