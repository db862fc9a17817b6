# syntax=docker/dockerfile:1
# The controller's image: `docker build -t vigil .`
#
# Two stages: the first builds vigil's wheel from the sources; the second is a slim Python with only that
# wheel and its runtime dependencies installed (no sources, no build tools, no test tools, and no embedded
# broker: the `broker` extra is for `vigil demo` and the tests, production talks to a real Kafka). It runs as
# uid/gid 65532, as the Helm chart's securityContext requires, and writes nothing outside /tmp, so it runs
# with a read-only root filesystem (the chart mounts an emptyDir on /tmp).
# tests/test_packaging.py checks these properties, since no image is built in CI.

ARG PYTHON_VERSION=3.12

FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Only what the wheel is built from (see .dockerignore): the metadata, then the two packages.
COPY pyproject.toml README.md LICENSE ./
COPY controller ./controller
COPY detectors ./detectors
RUN python -m pip wheel --no-deps --wheel-dir /wheels .

FROM python:${PYTHON_VERSION}-slim AS runtime
LABEL org.opencontainers.image.title="vigil" \
      org.opencontainers.image.description="Streaming canary analysis and auto-rollback for AI agents" \
      org.opencontainers.image.licenses="Apache-2.0"
# No bytecode written at run time (the root filesystem is read-only; pip compiled it at install time),
# no pip cache in the image, logs unbuffered, and a HOME that is writable.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    HOME=/tmp
# The wheel alone, without extras: its runtime dependencies come from the package index.
COPY --from=build /wheels /wheels
RUN python -m pip install /wheels/*.whl \
 && rm -rf /wheels \
 && groupadd --system --gid 65532 vigil \
 && useradd --system --uid 65532 --gid 65532 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin vigil
WORKDIR /tmp
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["vigil"]
CMD ["--help"]
