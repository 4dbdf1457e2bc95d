#!/bin/bash
# The four arms of NOTES.md, one after the other, from the repository root, under the shared lock:
#   flock /tmp/heavy.lock bench/results/shadow-avx512-epyc/run.sh
# RUN is a quick run (toxdistill run --quick) with its exports; TOXDISTILL_DATA its data file.
set -e
RUN=${RUN:-$HOME/toxdistill-runs/quick}
OUT=${OUT:-bench/results/shadow-avx512-epyc}
PY=${PY:-python}
SERVED="$RUN/export/shallow-1-openvino-int8"
COMMON="$SERVED --texts-from $RUN --suite --step-seconds 15 --overload-seconds 5 --offline-seconds 3 --threads 2"
$PY bench/load.py $COMMON -o $OUT/a-base.json
$PY bench/load.py $COMMON --serve-args "--shadow $RUN/models/teacher --shadow-rate 0.05" -o $OUT/a-torch-teacher.json
$PY bench/load.py $COMMON --serve-args "--shadow $RUN/export/teacher-openvino-int8 --shadow-rate 0.05" \
    -o $OUT/a-openvino-teacher.json
$PY bench/load.py $COMMON --serve-args "--shadow $RUN/models/teacher --shadow-rate 0.05 --shadow-max-busy 1" \
    -o $OUT/a-torch-teacher-no-cap.json
