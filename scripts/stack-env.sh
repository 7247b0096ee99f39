#!/usr/bin/env bash
# Print the environment of a second, independent local stack whose ports are shifted by OFFSET
# (default 0 = the normal stack). Lets two developers (or sessions) run the integration suite on
# one machine without sharing stores:   eval "$(scripts/stack-env.sh 10)"; make infra-up test
OFFSET="${1:-0}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ "$OFFSET" == 0 ]]; then DIR="$ROOT/.local"; else DIR="$ROOT/.local/stack-$OFFSET"; fi
cat <<EOF
export DISCOGSOGRAPHY_LOCAL_DIR=$DIR
export POSTGRES_PORT=$((5432 + OFFSET)) POSTGRES_ADDRESS=127.0.0.1:$((5432 + OFFSET))
export REDIS_PORT=$((6379 + OFFSET)) REDIS_URL=redis://127.0.0.1:$((6379 + OFFSET))/0
export RABBITMQ_PORT=$((5672 + OFFSET)) RABBITMQ_MANAGEMENT_PORT=$((15672 + OFFSET))
export AMQP_URL=amqp://discogsography:discogsography@127.0.0.1:$((5672 + OFFSET))/
export RABBITMQ_MANAGEMENT_URL=http://127.0.0.1:$((15672 + OFFSET))
export NEO4J_BOLT_PORT=$((7687 + OFFSET)) NEO4J_URI=bolt://127.0.0.1:$((7687 + OFFSET))
export SERVICE_PORT_OFFSET=$OFFSET
EOF
if [[ "$OFFSET" != 0 ]]; then
  echo "export NEO4J_HEAP=1g NEO4J_PAGECACHE_MB=512 POSTGRES_SHARED_BUFFERS=256MB"
fi
