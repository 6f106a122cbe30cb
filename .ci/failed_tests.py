#!/usr/bin/python3
"""Names each test that did not pass in a meson build dir's testlog.json, with the end
of its output: CI keeps only the end of what it prints, so this goes last."""
import json
import sys

build = sys.argv[1]
with open(f"{build}/meson-logs/testlog.json") as log:
    for line in log:
        test = json.loads(line)
        if test["result"] in ("OK", "SKIP", "EXPECTEDFAIL"):
            continue
        print(f"{build}: {test['name']} {test['result']} after {test['duration']:.0f} s")
        output = (test.get("stdout") or "") + (test.get("stderr") or "")
        for text in output.splitlines()[-25:]:
            print(f"    {text}")
