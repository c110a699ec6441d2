#!/usr/bin/env python3
"""kafka-python on the other side of millrace's interop tests.

    kafka_python_client.py consume BOOTSTRAP TOPIC COUNT
        reads COUNT records from the beginning of TOPIC and prints one JSON object per
        record: partition, offset, key/value as hex (null key stays null), headers as
        [name, hex] pairs.
    kafka_python_client.py produce BOOTSTRAP TOPIC < records.jsonl
        produces one record per input line ({"key": hex|null, "value": hex,
        "headers": [[name, hex], ...]}) with kafka-python's default (Java-compatible,
        murmur2) partitioner and acks=all; prints {"partition", "offset"} per record.

Exits non-zero with a message on any failure; never waits longer than 60 s.
"""
import json
import sys
import time

from kafka import KafkaConsumer, KafkaProducer


def unhex(s):
    return None if s is None else bytes.fromhex(s)


def consume(bootstrap, topic, count):
    c = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=1000,
        fetch_max_bytes=8 * 1024 * 1024,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    deadline = time.time() + 60
    seen = []
    while len(seen) < count and time.time() < deadline:
        for m in c:
            seen.append(m)
            if len(seen) >= count:
                break
    c.close()
    if len(seen) < count:
        sys.exit(f"kafka-python read {len(seen)} of {count} records from {topic}")
    seen.sort(key=lambda m: (m.partition, m.offset))
    for m in seen:
        print(json.dumps({
            "partition": m.partition,
            "offset": m.offset,
            "key": None if m.key is None else m.key.hex(),
            "value": (m.value or b"").hex(),
            "headers": [[k, (v or b"").hex()] for k, v in (m.headers or [])],
        }))


def produce(bootstrap, topic):
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                      max_request_size=8 * 1024 * 1024)
    futures = []
    for line in sys.stdin:
        if not line.strip():
            continue
        r = json.loads(line)
        futures.append(p.send(
            topic,
            key=unhex(r.get("key")),
            value=unhex(r["value"]),
            headers=[(k, unhex(v)) for k, v in r.get("headers", [])],
        ))
    for f in futures:
        md = f.get(timeout=60)
        print(json.dumps({"partition": md.partition, "offset": md.offset}))
    p.close(timeout=10)


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    mode, bootstrap, topic = sys.argv[1:4]
    if mode == "consume":
        consume(bootstrap, topic, int(sys.argv[4]))
    elif mode == "produce":
        produce(bootstrap, topic)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
