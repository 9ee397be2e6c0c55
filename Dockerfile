# syntax=docker/dockerfile:1
# The base is pinned by digest (a tag moves); refresh both together, e.g. with
# `docker buildx imagetools inspect python:3.11-slim-bookworm`.
ARG PYTHON_IMAGE=python:3.11.10-slim-bookworm@sha256:5148c0e4bbb64271bca1d3322360ebf4bfb7564507ae32dd639322e4952a6b16

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv --without-pip /opt/appgw-sse
# Dependencies first, from pyproject.toml alone: a source edit does not invalidate this layer.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
    && pip --python /opt/appgw-sse/bin/python install -r requirements.txt
COPY README.md LICENSE ./
COPY operator ./operator
RUN pip --python /opt/appgw-sse/bin/python install --no-deps .

# Only the virtualenv crosses over: no wheels, no pip cache, no sources.
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/appgw-sse/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY --from=build /opt/appgw-sse /opt/appgw-sse
# A numeric user, so runAsNonRoot can check it; nothing is written to the root filesystem.
USER 10001:10001
ENTRYPOINT ["appgw-sse"]
CMD ["run"]
