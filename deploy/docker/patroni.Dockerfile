# TimescaleDB with Patroni: the database node of the HA deployments
# (deploy/compose/docker-compose.ha.yml, deploy/k8s/ha/). Patroni starts PostgreSQL itself,
# so the image's own entrypoint (initdb on first start) is replaced.
FROM timescale/timescaledb:2.17.2-pg16
RUN apk add --no-cache python3 py3-pip py3-psycopg2 curl \
 && pip install --no-cache-dir --break-system-packages "patroni[etcd3,kubernetes]==3.3.11" \
 && mkdir -p /home/postgres && chown postgres:postgres /home/postgres
ENV HOME=/home/postgres
USER postgres
EXPOSE 5432 8008
ENTRYPOINT ["patroni"]
CMD ["/etc/patroni/patroni.yml"]
