# The csi-libstorage plugin image: Debian 12 slim, the tools the plugin runs,
# and the static binaries that `make release` builds (bin/release). Build it
# with `make image`, which runs `make release` first.
#
# The packages below are checked against the commands the plugin executes
# (deploy/check TestImageInstallsEveryCommand): a new exec in the code fails
# that test until its package is added here.
FROM debian:12-slim

ARG TARGETARCH=amd64

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates \
      e2fsprogs \
      xfsprogs \
      btrfs-progs \
      util-linux \
 && rm -rf /var/lib/apt/lists/*

COPY bin/release/csi-libstorage-linux-${TARGETARCH} /usr/local/bin/csi-libstorage
COPY bin/release/csictl-linux-${TARGETARCH} /usr/local/bin/csictl
COPY LICENSE NOTICE /usr/share/doc/csi-libstorage/

ENTRYPOINT ["/usr/local/bin/csi-libstorage"]
