#!/usr/bin/env python3
"""Taylor's half-hourly electricity demand of England and Wales (5 June - 27 August 2000,
4,032 half-hours: 12 weeks; J. W. Taylor, "Short-term electricity demand forecasting using
double seasonal exponential smoothing", JORS 2003), as shipped offline by the Python package
pmdarima, written as a two-column trace (ISO-8601 UTC time, demand in MW rounded to an
integer), the foreign form `shardcast-sim forecast --trace` reads (docs/trace-format.md 4).

    pip install pmdarima
    python3 benches/datasets/taylor_to_trace.py > /tmp/taylor.csv
    cargo run --release -p shardcast-sim -- forecast --trace /tmp/taylor.csv --horizon-s 7200
"""
import datetime
import sys

import pmdarima.datasets

demand = pmdarima.datasets.load_taylor()
start = datetime.datetime(2000, 6, 5, tzinfo=datetime.timezone.utc)
out = sys.stdout
out.write("time,demand_mw\n")
for i, v in enumerate(demand):
    t = start + datetime.timedelta(minutes=30 * i)
    out.write(f"{t.strftime('%Y-%m-%dT%H:%M:%SZ')},{int(round(v))}\n")
