# syntax=docker/dockerfile:1
#
# Builds the single gpufleet binary (agent, ingest, migrate, query, api, demo, simulate)
# into a distroless, non-root image. Pick the subcommand with the container command,
# e.g. `docker run gpufleet ingest`; every flag can also be set through an
# environment variable GPUFLEET_<FLAG_NAME> (--brokers -> GPUFLEET_BROKERS).
#
# gpufleet listens on 127.0.0.1 unless told otherwise, which a published port
# cannot reach: in a container pass the address explicitly, e.g.
#   docker run -p 127.0.0.1:8081:8081 -e GPUFLEET_HTTP=0.0.0.0:8081 gpufleet api
#   docker run -p 9401:9401 -e GPUFLEET_METRICS_ADDR=0.0.0.0:9401 gpufleet ingest

FROM golang:1.26 AS build
WORKDIR /src
# -buildvcs=false: the build context may carry a .git the container's git cannot read.
ENV GOFLAGS="-trimpath -buildvcs=false"
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -o /out/gpufleet ./cmd/gpufleet

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/gpufleet /gpufleet
USER nonroot:nonroot
ENTRYPOINT ["/gpufleet"]
