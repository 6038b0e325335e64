"""The benchmark of issues 7 and 15: Mailhub's real stack on loopback, measured in one run,
beside django-post-office (its peer) on the same machine.

    ./scripts/bench                      # or: make bench, or .venv/bin/python -m benchmarks
    ./scripts/bench --messages 2000 --skip-million
    ./scripts/bench --soak 300 --profile var/bench-profile
    ./scripts/bench --peers-only --rounds 3
    .venv/bin/python -m benchmarks.charts var/bench/<UTC time>.json --out docs/bench/

See ``benchmarks.run`` for what is measured and how, ``benchmarks.peer_phases`` for the peer
comparison; README.md ("Measured") for the figures.
"""
