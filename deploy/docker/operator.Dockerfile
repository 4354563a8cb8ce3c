# forecast-operator image: docker build -f deploy/docker/operator.Dockerfile -t forecast-operator .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p forecast-operator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/forecast-operator /usr/local/bin/forecast-operator
USER 65532:65532
EXPOSE 8081 8082
ENTRYPOINT ["/usr/local/bin/forecast-operator"]
