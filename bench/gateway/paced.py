"""Light load for bench/ab.sh (PACE_MS=...): one chat request every PACE_MS milliseconds on one
keep-alive connection, for a duration, printing the lines of wrk's report that ab.sh reads (the
count, the p50 and the rate). What it measures is the CPU llmux spends per request when its
threads are idle between requests, where wrk would keep them busy.

    python3 bench/gateway/paced.py URL KEY MODEL PACE_MS SECONDS
"""

import http.client
import json
import sys
import time
import urllib.parse

url, key, model = sys.argv[1], sys.argv[2], sys.argv[3]
pace, seconds = float(sys.argv[4]) / 1000, float(sys.argv[5])
target = urllib.parse.urlparse(url)
conn = http.client.HTTPConnection(target.hostname, target.port)
body = json.dumps({"model": model, "messages": [{"role": "user", "content": "Say hello."}]})
headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
took = []
start = time.monotonic()
due = start
while time.monotonic() - start < seconds:
    sent = time.perf_counter()
    conn.request("POST", target.path, body, headers)
    answer = conn.getresponse()
    answer.read()
    took.append(time.perf_counter() - sent)
    if answer.status != 200:
        sys.exit(f"status {answer.status}")
    due += pace
    time.sleep(max(0.0, due - time.monotonic()))
elapsed = time.monotonic() - start
took.sort()
print(f"  {len(took)} requests in {elapsed:.2f}s")
print(f"     50%  {took[len(took) // 2] * 1e6:.0f}us")
print(f"Requests/sec: {len(took) / elapsed:.2f}")
