"""One figure from a Prometheus text endpoint, for the benchmarks' inline scripts.

    sys.path.insert(0, "bench"); from prom_metric import metric
    metric("http://127.0.0.1:7070", "panorama_collector_events_in_total")
    metric(agent_url, "panorama_agent_bytes_acked_total", source="access")

None when the endpoint does not answer or has no such line.
"""
import urllib.request


def metric(base, name, source=None):
    try:
        body = urllib.request.urlopen(base + "/metrics", timeout=5).read().decode()
    except OSError:
        return None
    want = name + (f'{{source="{source}"}}' if source else "")
    for line in body.splitlines():
        if line.split(" ")[0] == want:
            return int(float(line.split()[-1]))
    return None
