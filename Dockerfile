# One image for every server of every topology: `seambench serve NAME` starts any process,
# leaf server or gateway by name, through the launcher's own code (bench/deploy/serve.py).
# Build it with scripts/build-image: it makes the wheels of seambench and of everything it
# needs on the host first, so the build itself reaches no package index.
#
#   docker build --network host --build-arg BASE=seambench-base:bookworm -t seambench:0.1.0 .
#
# BASE: the official python:3.11-slim, or any image with Python 3.11 and its venv module
# (scripts/build-base-image makes one from Debian's packages, for a machine without Docker Hub).
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
# Marked, so scripts/build-image can remove this stage's image once built (the legacy
# builder keeps it) and a superseded image of seambench's, both untagged.
LABEL org.opencontainers.image.title=seambench
COPY build/image-wheels/ /tmp/wheels/
# A virtual environment of its own: Debian's python3 is "externally managed" and refuses pip.
RUN python3 -m venv /opt/seambench \
    && /opt/seambench/bin/pip install --no-index --find-links /tmp/wheels --no-cache-dir \
        --disable-pip-version-check --quiet 'seambench[postgres,rabbitmq]'

# The wheels stay in the first stage: only the installed environment is kept.
FROM ${BASE}
LABEL org.opencontainers.image.title=seambench
COPY --from=build /opt/seambench /opt/seambench
# /data: each server's databases and metrics files (a volume); owned by the user the servers
# run as, so a fresh volume is writable too.
RUN mkdir -p /data /etc/seambench && chown 10001:10001 /data
ENV PATH=/opt/seambench/bin:$PATH HOME=/tmp PYTHONDONTWRITEBYTECODE=1 SEAMBENCH_DATA_DIR=/data
USER 10001
WORKDIR /data
EXPOSE 8000
ENTRYPOINT ["seambench"]
CMD ["--help"]
