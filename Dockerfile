# syntax=docker/dockerfile:1
#
# Builds the single gpufleet binary (agent, ingest, migrate, query, demo, simulate)
# into a distroless, non-root image. Pick the subcommand with the container command,
# e.g. `docker run gpufleet ingest`; every flag can also be set through an
# environment variable GPUFLEET_<FLAG_NAME> (--brokers -> GPUFLEET_BROKERS).

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
