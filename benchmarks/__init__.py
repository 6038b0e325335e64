"""The benchmark of issue 7: Mailhub's real stack on loopback, measured in one run.

    ./scripts/bench                      # or: make bench, or .venv/bin/python -m benchmarks
    ./scripts/bench --messages 2000 --skip-million
    ./scripts/bench --soak 300 --profile var/bench-profile

See ``benchmarks.run`` for what is measured and how; README.md ("Measured") for the figures.
"""
