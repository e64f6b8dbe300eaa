"""Prints the product's and the peer's results of one scenario side by
side (Markdown), with their ratio. Called by scripts/compare.sh."""
import json
import sys


def load(path):
    with open(path) as f:
        return json.load(f)


def ms(r, part, q):
    return r[part][q]


def cpu(r):
    c = r.get("cpu_percent", {})
    return " / ".join(f"{k} {v:.0f}" for k, v in sorted(c.items()))


def throughput_rows(name, doc):
    rows = []
    for s in doc["sets"]:
        r = s["result"]
        rows.append(
            f"| {name} | {s['rate']:,.0f} | {r['acked']:,} / {r.get('lost', '?')} / {r['refused']} "
            f"| {ms(r, 'ack', 'p50_ms'):.2f} / {ms(r, 'ack', 'p99_ms'):.2f} "
            f"| {ms(r, 'persisted', 'p50_ms'):.2f} / {ms(r, 'persisted', 'p99_ms'):.2f} "
            f"| {ms(r, 'fanout', 'p99_ms'):.2f} | {r.get('persisted_per_s', 0):,.0f} "
            f"| {'passes' if s['passes'] else 'fails'} | {cpu(r)} |"
        )
    return rows


def ratio(a, b):
    return f"{a / b:.1f}×" if a and b else "—"


def main():
    product, peer = load(sys.argv[1]), load(sys.argv[2])
    kind = product["scenario"]
    if kind in ("throughput", "fanout"):
        print("| server | rate (msg/s) | acked / lost / refused | ack p50 / p99 (ms) "
              "| persisted p50 / p99 (ms) | fan-out p99 (ms) | persisted/s | verdict | CPU % of one core |")
        print("|---|---|---|---|---|---|---|---|---|")
        for row in throughput_rows("product", product) + throughput_rows("peer", peer):
            print(row)
        a, b = product.get("highest_passing"), peer.get("highest_passing")
        print()
        print(f"Highest rate passing: product {a or 'none'}, peer {b or 'none'}: {ratio(a, b)} the peer's.")
        if kind == "fanout":
            pa = product["sets"][0]["result"]["fanout"]["p99_ms"]
            pb = peer["sets"][0]["result"]["fanout"]["p99_ms"]
            print(f"Delivery p99: product {pa:.2f} ms, peer {pb:.2f} ms: {pa / pb:.2f} of the peer's.")
    elif kind == "connections":
        a = product["sets"][0]["result"]
        b = peer["sets"][0]["result"]
        print("| server | held | memory per connection (bytes) | CPU % of one core |")
        print("|---|---|---|---|")
        for name, r in (("product", a), ("peer", b)):
            print(f"| {name} | {r['held']:,} of {r['connections']:,} | {r['bytes_per_connection']:,.0f} | {cpu(r)} |")
        print()
        print(f"Memory per connection: {a['bytes_per_connection'] / b['bytes_per_connection']:.2f} of the peer's.")
    else:
        print(json.dumps({"product": product, "peer": peer}, indent=1))


main()
