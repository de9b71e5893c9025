# syntax=docker/dockerfile:1
#
# Two images from one binary's source, multi-arch (linux/amd64, linux/arm64):
#
#   docker buildx build --platform linux/amd64,linux/arm64 --target server -t gpufleet .
#   docker buildx build --platform linux/amd64,linux/arm64 --target agent  -t gpufleet-agent .
#
# server (the default target): ingest, migrate, api, query, topics, simulate, healthcheck. Pure
#   Go, built without the embedded chDB engine (-tags nochdb: loading libchdb needs the C loader,
#   and a container talks to a ClickHouse server), so the binary is static and runs on
#   distroless/static.
# agent: reads the GPUs through NVML, which needs cgo and glibc's loader; libnvidia-ml.so.1 is not
#   in the image but injected at run time by the NVIDIA container toolkit (runtimeClassName:
#   nvidia, or `docker run --gpus all`), and loaded with dlopen, so the binary does not list it.
#   Built in the same Debian release as its distroless/base base, so the glibc symbols it needs
#   are ones the base has. The agent-only build (-tags agentonly) leaves the server commands out.
#
# deploy/image_test.go builds both binaries with the go build lines of this file and checks each
# against its base: the program interpreter and every shared library it needs, per architecture
# (docs/images.md). Images are pinned by tag; digests cannot be resolved from the machine this
# was written on, so pin them in your registry mirror (docs/images.md says how).
#
# gpufleet listens on 127.0.0.1 unless told otherwise, which a published port cannot reach: in a
# container pass the address explicitly, e.g.
#   docker run -p 127.0.0.1:8081:8081 -e GPUFLEET_HTTP=0.0.0.0:8081 gpufleet api
#   docker run -p 9401:9401 -e GPUFLEET_METRICS_ADDR=0.0.0.0:9401 gpufleet ingest
# Every flag can also be set through an environment variable GPUFLEET_<FLAG_NAME>.

# The server binary cross-compiles on the build host's platform; the agent's cgo build runs on
# the target platform (emulated under buildx for the other architecture).
FROM --platform=$BUILDPLATFORM golang:1.26.8-bookworm AS build-server
ARG TARGETOS TARGETARCH
WORKDIR /src
# -buildvcs=false: the build context may carry a .git the container's git cannot read.
ENV GOFLAGS="-trimpath -buildvcs=false"
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -tags nochdb -ldflags "-s -w" -o /out/gpufleet ./cmd/gpufleet

FROM golang:1.26.8-bookworm AS build-agent
WORKDIR /src
ENV GOFLAGS="-trimpath -buildvcs=false"
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=1 CGO_CFLAGS="-Wno-deprecated-declarations" go build -tags agentonly -ldflags "-s -w" -o /out/gpufleet ./cmd/gpufleet

FROM gcr.io/distroless/base-debian12:nonroot AS agent
COPY --from=build-agent /out/gpufleet /gpufleet
# NVML answers a non-root user on the usual device permissions (0666 /dev/nvidia*); cgroup
# attribution reads /proc of other users' processes and needs root: the Helm chart's
# agent.runAsUser says which.
USER nonroot:nonroot
ENTRYPOINT ["/gpufleet"]

FROM gcr.io/distroless/static-debian12:nonroot AS server
COPY --from=build-server /out/gpufleet /gpufleet
USER nonroot:nonroot
ENTRYPOINT ["/gpufleet"]
