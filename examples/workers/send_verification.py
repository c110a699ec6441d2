#!/usr/bin/env python3
"""Sign-up example worker: "sends" the verification email for one sign-up.

Input value:  {"user_id", "email", "phone", "region", "notify"}
Output value: {"user_id", "email", "region"}  (one per sign-up, to verification-emails)

A sign-up without a usable user_id or email is rejected (dead-lettered with the reason).
Python standard library only; speaks docs/exec-protocol.md.
"""
import json
import sys


def handle(value):
    if not isinstance(value, dict):
        raise ValueError("sign-up is not a JSON object")
    for field in ("user_id", "email", "region"):
        if value.get(field) in (None, ""):
            raise ValueError(f"sign-up has no {field}")
    email = value["email"]
    if not isinstance(email, str) or "@" not in email:
        raise ValueError(f"not an email address: {email!r}")
    # A real worker would call the mail service here; the pipeline records the fact.
    return [{"user_id": value["user_id"], "email": email, "region": value["region"]}]


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
