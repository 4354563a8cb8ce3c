# forecast-predictor image with a bundled fallback model:
#   docker build -f deploy/docker/predictor.Dockerfile -t forecast-predictor .
# Base images pinned by digest (refresh with `docker buildx imagetools inspect <image:tag>`;
# this repository's build machine reaches no container registry, so the digests were taken
# from public references of these tags, not resolved here).
FROM rust:1.95-bookworm@sha256:6258907abe69656e41cd992e0b705cdcfabcbbe3db374f92ed2d47121282d4a1 AS build
WORKDIR /src
COPY . .
# Two builds: forecastctl (with the training code) trains the bundled model; the
# predictor is built on its own, so its binary carries no training code (smartcore).
RUN cargo build --release --locked -p forecast-cli \
 && ./target/release/forecastctl train --out /models \
 && cargo build --release --locked -p forecast-predictor
# The bundled model sits at the top of MODEL_FALLBACK_DIR; registry models are cached in
# its cache/ subdirectory (an emptyDir the operator mounts, so the root stays read-only).
RUN mkdir -p /models/cache

FROM gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f
COPY --from=build /src/target/release/forecast-predictor /usr/local/bin/forecast-predictor
COPY --from=build --chown=65532:65532 /models /var/lib/forecast/models
ENV MODEL_FALLBACK_DIR=/var/lib/forecast/models PORT=8080
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/forecast-predictor"]
