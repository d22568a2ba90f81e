#!/usr/bin/env bash
# Set everything up and run the main job: RNN vs LSTM vs GRU for the seed's configuration
# (input 28, hidden 256, 2 layers, batch 64, 28 steps): parameters, cost and measured CPU
# throughput beside the speed model's prediction, exported to report.md, with a plot in report.png.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh plot
.venv/bin/paramcalc compare -d 28 -H 256 -L 2 --batch 64 --seq-len 28 --bench --predict --device cpu \
    --output report.md --plot report.png "$@"
