# toolgate's image (docs/deployment.md): a static binary on distroless, run
# as a user who is not root.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t toolgate .
#
# Without arguments the container serves the development default, which
# listens on loopback only (127.0.0.1:8080) and needs no tenant: reach it with
# `docker run --network host toolgate` (Linux) and mint a token with
# `docker exec <container> /toolgate token`. In production mount a
# configuration file and pass it:
#
#   docker run -p 8080:8080 -v $PWD/toolgate.yaml:/etc/toolgate/toolgate.yaml:ro \
#     toolgate serve --config /etc/toolgate/toolgate.yaml
#
# Port: 8080, or the port of `listen` in the configuration file (MCP at /mcp,
# /metrics on the same port unless metrics.listen is set).
# Health: GET /healthz (the process serves) and /readyz (policy loaded, every
# issuer's keys fetched; 503 until then), for the orchestrator's HTTP probes
# (deploy/kubernetes/deployment.yaml). The image has no shell or HTTP client,
# so it declares no HEALTHCHECK of its own.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# The build and its check are `make static`, as CI runs it: cgo off,
# -trimpath, the version in server.Version; then the binary is checked to be
# static and started as a user who is not root with an empty environment.
RUN make static VERSION=${VERSION}

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/bin/toolgate-static /toolgate
USER nonroot:nonroot
EXPOSE 8080
ENTRYPOINT ["/toolgate"]
CMD ["serve"]
