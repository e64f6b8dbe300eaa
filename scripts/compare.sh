#!/usr/bin/env bash
# Runs one loadgen scenario against the product and then against the peer
# (bench/peer: Socket.IO + BullMQ + pg), each on a fresh stack, in one go,
# and prints both side by side with their ratio.
#
#   scripts/compare.sh [--sync-interval always] [--batching atomic] [--peer-rate 500,1000,1500] -- \
#     throughput --rooms 50 --users 10 --duration 20 --rate 5000,7500,10000
#   scripts/compare.sh -- fanout --members 1000 --rate 10 --duration 20
#   scripts/compare.sh -- connections --count 10000
#
# --peer-rate gives the peer rates of its own (a sweep around its
# capacity); otherwise it gets the product's. --sync-interval and
# --batching go to the product only. The raw figures are kept in bench-results/.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

PEER_RATE=""
product_opts=()
while [ $# -gt 0 ]; do
  case $1 in
    --peer-rate) PEER_RATE=$2; shift 2 ;;
    --sync-interval | --batching) product_opts+=("$1" "$2"); shift 2 ;;
    --) shift; break ;;
    *) die "unknown option $1 (see the header of $0)" ;;
  esac
done
[ $# -gt 0 ] || die "give a loadgen scenario after --"
out="$ROOT/bench-results/$(date +%Y%m%d-%H%M%S)-$1"
mkdir -p "$out"

peer_args=("$@")
if [ -n "$PEER_RATE" ]; then
  for i in "${!peer_args[@]}"; do
    [ "${peer_args[$i]}" = --rate ] && peer_args[$((i + 1))]=$PEER_RATE
  done
fi

say "the product"
scripts/bench.sh "${product_opts[@]}" -- "$@" --json "$out/product.json"
say "the peer"
scripts/bench.sh --peer -- "${peer_args[@]}" --json "$out/peer.json"
python3 "$ROOT/scripts/compare_table.py" "$out/product.json" "$out/peer.json" | tee "$out/table.md"
