#!/usr/bin/env python3
"""Generic millrace exec worker: answers every item with its value, unchanged.

The protocol (docs/exec-protocol.md) in a dozen lines: read one JSON request per line
from stdin, write one JSON reply per line to stdout, flush. Copy this file to start a
worker of your own and change handle(). Python standard library only.
"""
import json
import sys


def handle(value, request):
    """Return the list of output values (0..n) for one input value.

    Raise ValueError to reject the item: millrace dead-letters it with the message
    and does not retry (a retry would get the same answer).
    """
    return [value]


def main():
    while True:
        line = sys.stdin.readline()
        if not line:  # stdin closed: millrace is shutting the worker down
            return
        if not line.strip():
            continue
        request = json.loads(line)
        try:
            reply = {"id": request["id"], "out": handle(request["value"], request)}
        except ValueError as e:
            reply = {"id": request["id"], "error": str(e)}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()  # millrace waits for the line; never leave it in a buffer


if __name__ == "__main__":
    main()
