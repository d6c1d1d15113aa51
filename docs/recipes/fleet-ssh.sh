#!/bin/bash
# Plain ssh: the same command on a few hosts, each a worker of one job. Each host mounts the shared
# folder (NFS, say) and has the key in its environment and the database password in ~/.pgpass.
#   ./fleet-ssh.sh host1 host2 host3
set -euo pipefail
if [ "$#" -eq 0 ]; then
    echo "usage: $0 HOST..." >&2
    exit 2
fi
command='batch-inpaint run /shared/photos --masks /shared/masks -o /shared/cleaned --job photos-2026-12 --manifest postgresql://inpaint@db.internal/inpaint --progress lines --no-report'
for host in "$@"; do
    ssh "$host" "$command" > "worker-$host.log" 2>&1 &
done
failed=0
for job in $(jobs -p); do
    wait "$job" || failed=1
done
batch-inpaint status /shared/cleaned --job photos-2026-12 --manifest postgresql://inpaint@db.internal/inpaint
exit "$failed"
