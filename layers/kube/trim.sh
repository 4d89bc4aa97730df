#!/bin/sh
# Keep from an installed kubernetes client (in $1) what the poller imports: client.configuration,
# client.rest, client.exceptions and the retry helpers rest.py uses. The package __init__ files
# import every generated API and model (pydantic, ~2 s and ~70 MB): they are replaced by empty ones.
# tests/infra/test_kube_layer.py polls a fake API server with a client trimmed by this script.
set -eu
k="$1/kubernetes"
[ -d "$k" ] || { echo "no kubernetes under $1" >&2; exit 1; }
keep=$(mktemp -d)
for f in client/configuration.py client/rest.py client/exceptions.py utils/retry.py utils/_retry_base.py \
		utils/keepalive.py; do
	mkdir -p "$keep/$(dirname "$f")" && cp "$k/$f" "$keep/$f"
done
rm -rf "$k" && mv "$keep" "$k" && chmod 755 "$k"
for d in "" client utils; do
	echo '"""Trimmed for auditlake (layers/kube/trim.sh): nothing is imported eagerly."""' > "$k/$d/__init__.py"
done
rm -rf "$1"/kubernetes-*.dist-info/RECORD "$1/bin"
find "$1" -name __pycache__ -type d -prune -exec rm -rf {} +
