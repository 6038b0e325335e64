"""Prometheus and the Grafana dashboard beside ./scripts/start's stack, without Docker.

- ``python -m monitoring prometheus`` (``make monitoring``, through ``scripts/monitoring``):
  writes ``var/prometheus/prometheus.yml``, the shipped ``deploy/prometheus/prometheus.yml``
  pointed at this machine's stack, and runs Debian's ``prometheus`` with it;
- ``python -m monitoring snapshot``: asks that Prometheus for every query of every panel of
  ``deploy/grafana/mailhub-dashboard.json`` and draws the panels (``make dashboard-snapshot``;
  matplotlib, from the ``bench`` extra).

Not a Django app: it imports none of Mailhub's apps, and the web processes never import it.
"""
