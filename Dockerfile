# Panorama in a container: `docker build -t panorama .`, then
#   docker run -p 7070:7070 panorama                 # the demo
#   docker run -p 7070:7070 -v /etc/panorama:/etc/panorama -v panorama-data:/var/lib/panorama \
#     panorama collector --config /etc/panorama/panorama.toml
# The agent belongs on each host, next to the logs, not in this image.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --bin panorama --bin panorama-agent

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/panorama panorama \
    && install -d -o panorama /var/lib/panorama
COPY --from=build /src/target/release/panorama /src/target/release/panorama-agent /usr/local/bin/
COPY examples /usr/share/panorama/examples
USER panorama
WORKDIR /var/lib/panorama
EXPOSE 7070
ENTRYPOINT ["/usr/local/bin/panorama"]
CMD ["demo", "--listen", "0.0.0.0:7070", "--dir", "/var/lib/panorama/demo"]
