# Sent to a test host and run there with `python3 -c`: one HTTP request to the Xinference API.
# Arguments: method, url, bearer token ("" for none), JSON body ("" for none).
# Prints "<status> <body>"; an HTTP error status is printed the same way, not raised.
import sys
import urllib.error
import urllib.request

method, url, token, body = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
req = urllib.request.Request(url, method=method, data=body.encode() if body else None)
req.add_header("Content-Type", "application/json")
if token:
    req.add_header("Authorization", "Bearer " + token)
try:
    with urllib.request.urlopen(req, timeout=120) as resp:
        print(resp.status, resp.read().decode())
except urllib.error.HTTPError as exc:
    print(exc.code, exc.read().decode())
