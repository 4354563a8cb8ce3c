# forecast-operator image: docker build -f deploy/docker/operator.Dockerfile -t forecast-operator .
# Base images pinned by digest (refresh with `docker buildx imagetools inspect <image:tag>`;
# this repository's build machine reaches no container registry, so the digests were taken
# from public references of these tags, not resolved here).
FROM rust:1.95-bookworm@sha256:6258907abe69656e41cd992e0b705cdcfabcbbe3db374f92ed2d47121282d4a1 AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p forecast-operator

FROM gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f
COPY --from=build /src/target/release/forecast-operator /usr/local/bin/forecast-operator
USER 65532:65532
EXPOSE 8081 8082
ENTRYPOINT ["/usr/local/bin/forecast-operator"]
