#!/usr/bin/python3
"""Names each test that did not pass in a meson build dir's testlog.json, with the lines of
its output that say why (doctest's ERROR lines, FAIL lines, tracebacks' last lines) and the
end of its output: CI keeps only the end of what it prints, so this goes last."""
import json
import re
import sys

WHY = re.compile(r"ERROR|FAIL|Error|assert|raised at|not within")

build = sys.argv[1]
with open(f"{build}/meson-logs/testlog.json") as log:
    for line in log:
        test = json.loads(line)
        if test["result"] in ("OK", "SKIP", "EXPECTEDFAIL"):
            continue
        print(f"{build}: {test['name']} {test['result']} after {test['duration']:.0f} s")
        output = ((test.get("stdout") or "") + (test.get("stderr") or "")).splitlines()
        for text in [t for t in output if WHY.search(t)][:15]:
            print(f"  why: {text[:300]}")
        for text in output[-10:]:
            print(f"    {text[:300]}")
