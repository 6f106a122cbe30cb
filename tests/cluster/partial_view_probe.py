# Probe (not a test yet): polls every broker's Metadata while __consumer_offsets is created and
# counts answers naming fewer than 50 partitions. On this branch: 93 of 7,094; on main: 0.
import os, sys, time, threading
sys.path.insert(0, "/work/main/tests/integration"); sys.path.insert(0, "/work/main/tests/cluster")
import kafka_raw as kr
from cluster import Cluster
os.environ.setdefault("SPATE_BIN", "/work/main/build/broker/spate")
short = []
seen = []
with Cluster(brokers=3, zk_nodes=1, shards=2) as c:
    stop = threading.Event()
    def poll(i):
        while not stop.is_set():
            try:
                t = c.metadata(i, ["__consumer_offsets"])["topics"].get("__consumer_offsets")
            except Exception:
                continue
            if t and t["error"] == 0 and t["partitions"]:
                n = len(t["partitions"])
                seen.append((i, n))
                if n != 50:
                    short.append((i, n))
    ths = [threading.Thread(target=poll, args=(i,), daemon=True) for i in c.ids]
    for t in ths: t.start()
    time.sleep(0.5)
    # FindCoordinator creates __consumer_offsets
    import importlib.util
    spec = importlib.util.spec_from_file_location('cgt', '/work/main/tests/cluster/groups_test.py'); g = importlib.util.module_from_spec(spec); spec.loader.exec_module(g)
    for _ in range(50):
        try:
            g.find_coordinator(("127.0.0.1", c.broker(c.ids[0]).port), "grp")
        except Exception:
            pass
        time.sleep(0.05)
    time.sleep(1)
    stop.set()
    t = c.metadata(c.ids[0], ["__consumer_offsets"])["topics"].get("__consumer_offsets")
    print("final:", None if t is None else (t["error"], len(t["partitions"])))
    print("fc:", g.find_coordinator(("127.0.0.1", c.broker(c.ids[0]).port), "grp"))
    print(c.metadata(c.ids[0], ["__consumer_offsets"])["topics"].get("__consumer_offsets", "absent") if False else "")
print("answers with the topic:", len(seen), "short:", len(short), short[:10])
