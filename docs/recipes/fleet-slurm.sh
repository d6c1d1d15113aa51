#!/bin/bash
# A Slurm array: eight tasks work on one job, sharing its manifest in Postgres.
#   sbatch fleet-slurm.sh
# The manifest's URL holds no password: libpq reads it from ~/.pgpass (chmod 600), as Postgres users expect.
#SBATCH --job-name=batch-inpaint
#SBATCH --array=0-7
#SBATCH --cpus-per-task=2
#SBATCH --mem=1G
#SBATCH --time=12:00:00
#SBATCH --signal=B:TERM@60
set -euo pipefail
export BATCH_INPAINT_MANIFEST="postgresql://inpaint@db.internal/inpaint"
# --job: the same on every task, whatever path the shared folder has on its node.
exec batch-inpaint run /shared/photos --masks /shared/masks -o /shared/cleaned --job photos-2026-12 \
    --engine local --log-format json --no-report
