# The MetaStore image: release binaries (metastore-storaged, metastore-gateway and the health
# probe) on a minimal root filesystem holding only their shared libraries, a non-root user and
# /data. No registry is needed: scripts/docker-image.sh builds the base image
# metastore-base:local from this machine's Debian libraries, prepares the build context and
# runs `docker build` on this file.
FROM metastore-base:local
COPY bin/ /usr/local/bin/
ENV PATH=/usr/local/bin
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
# etcd's ports: clients (gateway), peers (storaged raft); 2390: gateway -> storaged.
EXPOSE 2379 2380 2390
# Both binaries shut down cleanly on SIGTERM (a storaged leader hands leadership over first).
STOPSIGNAL SIGTERM
# The gateway's client port by default; storaged services override the URL (storage port).
HEALTHCHECK --interval=2s --timeout=3s --start-period=5s --retries=5 \
  CMD ["metastore-probe", "http://127.0.0.1:2379"]
