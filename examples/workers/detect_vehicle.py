#!/usr/bin/env python3
"""Images example worker: "detects" the vehicle in a photo.

Input value:  {"url", "vehicle", "color"}
Output value: {"url", "type", "color"} with type = the input's vehicle.
(The sample data carries the answer; a real worker would run a model on the image.)

Python standard library only; speaks docs/exec-protocol.md.
"""
import json
import sys


def handle(value):
    if not isinstance(value, dict) or not isinstance(value.get("url"), str):
        raise ValueError("image has no url")
    return [{"url": value["url"], "type": value.get("vehicle"), "color": value.get("color")}]


def main():
    while True:
        line = sys.stdin.readline()
        if not line:
            return
        if not line.strip():
            continue
        request = json.loads(line)
        try:
            reply = {"id": request["id"], "out": handle(request["value"])}
        except ValueError as e:
            reply = {"id": request["id"], "error": str(e)}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
