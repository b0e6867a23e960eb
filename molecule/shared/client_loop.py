# Sent to a test host and run there with `python3 -c`: embedding requests in a loop, one at a time,
# until the file named by the second argument exists; then prints a JSON summary of every request
# (start, seconds, HTTP status or the error). Arguments: url of /v1/embeddings, stop file, model uid.
# The API key comes on stdin (a command line is visible to every user of the host).
import json
import os
import sys
import time
import urllib.error
import urllib.request

url, stop, model = sys.argv[1], sys.argv[2], sys.argv[3]
key = sys.stdin.readline().strip()
body = json.dumps({"model": model, "input": ["a request during the rolling upgrade"]}).encode()
results = []
while not os.path.exists(stop):
    start = time.time()
    req = urllib.request.Request(url, method="POST", data=body)
    req.add_header("Content-Type", "application/json")
    req.add_header("Authorization", "Bearer " + key)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            ok = len(json.loads(resp.read())["data"][0]["embedding"]) > 0
            status = resp.status
    except urllib.error.HTTPError as exc:
        ok, status = False, exc.code
    except Exception as exc:  # refused, reset, timed out: the client sees a failure all the same
        ok, status = False, exc.__class__.__name__
    results.append({"t": round(start, 3), "s": round(time.time() - start, 3), "ok": ok, "status": status})
    time.sleep(0.2)
print(json.dumps(results))
