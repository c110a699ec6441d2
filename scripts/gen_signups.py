#!/usr/bin/env python3
"""Sample data for examples/signup.yaml: sign-ups and the users who verified.

Usage: gen_signups.py N OUT_DIR  -> OUT_DIR/signups.jsonl, OUT_DIR/verified.jsonl
Deterministic (seeded) so runs are comparable.
"""
import json
import random
import sys

n = int(sys.argv[1])
out = sys.argv[2]
rng = random.Random(42)
regions = ["eu", "us", "ap"]
choices = [[], ["email"], ["sms"], ["email", "sms"]]
with open(f"{out}/signups.jsonl", "w") as s, open(f"{out}/verified.jsonl", "w") as v:
    for i in range(n):
        user = {
            "user_id": f"u{i:06d}",
            "email": f"user{i}@example.com",
            "phone": f"+1555{i:07d}",
            "region": rng.choice(regions),
            "notify": rng.choice(choices),
        }
        line = json.dumps(user, separators=(",", ":"))
        s.write(line + "\n")
        # About two thirds click the verification link.
        if rng.random() < 0.66:
            v.write(line + "\n")
