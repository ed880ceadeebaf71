"""The python etcd3 client (PyPI) against MetaStore: put/get and a prefix range, a txn with
compare/then/else, a watch receiving live events, leases (refreshed, and expiring with their
key) and the client's lock. Every printed line is deterministic, so expected.txt holds the
whole output.

Endpoint: the first of ETCD_ENDPOINTS (comma-separated host:port, default 127.0.0.1:2379);
etcd3 talks to one endpoint.
"""
import os
import threading
import time

import etcd3
import etcd3.events

PREFIX = "examples/python/"


def main():
    host, port = os.environ.get("ETCD_ENDPOINTS", "127.0.0.1:2379").split(",")[0].split(":")
    client = etcd3.client(host=host, port=int(port), timeout=30)
    # A clean slate: earlier runs left their keys under the prefix.
    client.delete_prefix(PREFIX)
    kv(client)
    txn(client)
    watch(client)
    leases(client)
    lock(client)
    print("done")


def kv(client):
    client.put(PREFIX + "greeting", "hello")
    value, meta = client.get(PREFIX + "greeting")
    print(f"get {meta.key.decode()} = {value.decode()}")
    for i, name in enumerate(["a", "b", "c", "d"]):
        client.put(PREFIX + "fruit/" + name, str(i + 1))
    # A range over the prefix, sorted by key (etcd3 0.12 drops a range's limit argument).
    resp = client.get_prefix_response(PREFIX + "fruit/", sort_order="ascend")
    print(f"range {PREFIX}fruit/: count={resp.count} more={str(resp.more).lower()}")
    for item in resp.kvs:
        print(f"  {item.key.decode()} = {item.value.decode()}")


def txn(client):
    key = PREFIX + "config"
    client.put(key, "v1")
    for want in ["v1", "v1"]:
        succeeded, _ = client.transaction(
            compare=[client.transactions.value(key) == want],
            success=[client.transactions.put(key, "v2")],
            failure=[client.transactions.put(key, "v3")],
        )
        now, _ = client.get(key)
        print(f"txn if {key} == {want}: succeeded={str(succeeded).lower()}, now {now.decode()}")


def event_line(event):
    kind = "PUT" if isinstance(event, etcd3.events.PutEvent) else "DELETE"
    return f"{kind} {event.key.decode()} {event.value.decode()!r}"


def watch(client):
    key = PREFIX + "watched"
    # From the next revision on: only what happens after this point.
    header = client.get_response(key).header
    events, cancel = client.watch(key, start_revision=header.revision + 1)
    client.put(key, "first")
    client.put(key, "second")
    client.delete(key)
    for seen, event in enumerate(events, start=1):
        print("watch " + event_line(event))
        if seen == 3:
            break
    cancel()


def leases(client):
    # Refreshed: the key outlives its 2 s TTL several times over.
    kept = client.lease(2)
    client.put(PREFIX + "session", "alive", lease=kept)
    for _ in range(5):
        kept.refresh()
        time.sleep(1)
    present = client.get(PREFIX + "session")[0] is not None
    print(f"lease kept alive for 5s: {PREFIX}session present={str(present).lower()}")
    kept.revoke()
    present = client.get(PREFIX + "session")[0] is not None
    print(f"lease revoked: {PREFIX}session present={str(present).lower()}")

    # Left to expire: the key is deleted with its lease; a watch sees the delete.
    short = client.lease(2)
    client.put(PREFIX + "ephemeral", "soon gone", lease=short)
    header = client.get_response(PREFIX + "ephemeral").header
    events, cancel = client.watch(PREFIX + "ephemeral", start_revision=header.revision + 1)
    timer = threading.Timer(15, cancel)
    timer.start()
    for event in events:
        kind = "PUT" if isinstance(event, etcd3.events.PutEvent) else "DELETE"
        print(f"lease expired: watch saw {kind} {event.key.decode()}")
        break
    else:
        raise SystemExit("the lease did not expire within 15 s")
    timer.cancel()
    cancel()
    print(f"lease TTL after expiry: {short.remaining_ttl}")


def lock(client):
    first = client.lock(PREFIX + "lock", ttl=5)
    second = client.lock(PREFIX + "lock", ttl=5)
    print(f"lock: first holder acquired: {str(first.acquire(timeout=5)).lower()}")
    gave_up = not second.acquire(timeout=1)
    print(f"lock: second holder waited 1s and gave up: {str(gave_up).lower()}")
    first.release()
    print(f"lock: after release the second holder acquired: {str(second.acquire(timeout=5)).lower()}")
    second.release()


if __name__ == "__main__":
    main()
