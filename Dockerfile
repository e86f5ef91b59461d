# The extension image (`arca extension install --image`): the arca binary
# alone on a static base, running `arca extension run` in-cluster.
# Build: docker build -t REGISTRY/arca:VERSION --build-arg VERSION=VERSION .
FROM golang:1.26 AS build
ARG VERSION=dev
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/arca-backup/arca/internal/cli.Version=${VERSION}" \
      -o /out/arca ./cmd/arca

FROM gcr.io/distroless/static:nonroot
COPY --from=build /out/arca /arca
USER 65532:65532
ENTRYPOINT ["/arca"]
