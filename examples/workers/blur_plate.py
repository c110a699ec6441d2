#!/usr/bin/env python3
"""Images example worker: "blurs" the licence plate of a vehicle photo.

Input value:  {"url", "vehicle", "color"}
Output value: {"url", "blurred_url"} where blurred_url is url with "blurred/" inserted
before the file name: https://img.example/cars/42.jpg -> https://img.example/cars/blurred/42.jpg
(deterministic, so replays give the same output).

Python standard library only; speaks docs/exec-protocol.md.
"""
import json
import sys


def blurred(url):
    head, sep, name = url.rpartition("/")
    if not sep:
        return "blurred/" + url
    return f"{head}/blurred/{name}"


def handle(value):
    if not isinstance(value, dict) or not isinstance(value.get("url"), str):
        raise ValueError("image has no url")
    return [{"url": value["url"], "blurred_url": blurred(value["url"])}]


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
