"""Alerts end to end, with an independent verifier of the signatures.

Two Portcullis instances share one database (and, when given, one Redis). This script
registers a webhook whose receiver (a real HTTP server here) checks every message with the
`standardwebhooks` package, runs a credential-stuffing attack spread over both instances, and
requires exactly one `alert.credential_stuffing` message, correctly signed, within a minute.

Usage: alerts.py BASE_A BASE_B ADMIN_USER ADMIN_PASSWORD SHARED_STORE(0|1)
"""

import http.server
import sys
import threading
import time

import requests
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

BASE_A, BASE_B, ADMIN, ADMIN_PASSWORD, SHARED = sys.argv[1:6]
CLIENT = "portcullis-spa"
received = []
lock = threading.Lock()


class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        with lock:
            received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def token(base, username, password, scope):
    r = requests.post(
        f"{base}/oauth/token",
        data={
            "grant_type": "password",
            "username": username,
            "password": password,
            "client_id": CLIENT,
            "scope": scope,
        },
        timeout=30,
    )
    return r


def main():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"

    answer = token(BASE_A, ADMIN, ADMIN_PASSWORD, "webhooks:admin")
    assert answer.status_code == 200, answer.text
    admin = answer.json()["access_token"]
    created = requests.post(
        f"{BASE_A}/api/v1/admin/webhooks",
        json={"url": url, "description": "interop receiver"},
        headers={"authorization": f"Bearer {admin}"},
        timeout=30,
    )
    assert created.status_code == 201, created.text
    secret = created.json()["secret"]
    assert secret.startswith("whsec_")
    verifier = Webhook(secret)

    # A test message first: the receiver and the verifier agree with the sender.
    test = requests.post(
        f"{BASE_A}/api/v1/admin/webhooks/{created.json()['id']}/test",
        headers={"authorization": f"Bearer {admin}"},
        timeout=30,
    )
    assert test.status_code == 202, test.text

    # The attack: failed sign-ins on many accounts from one address, spread over both
    # instances. With a shared store, six on each (twelve in all) cross the threshold of ten
    # only together; with in-process stores each instance must see ten by itself.
    per_instance = 6 if SHARED == "1" else 10
    started = time.monotonic()
    for n in range(per_instance):
        for base, name in ((BASE_A, "a"), (BASE_B, "b")):
            r = token(base, f"stuffed-{name}-{n}", "guessed password 123", "openid")
            assert r.status_code == 400 and r.json()["error"] == "invalid_grant", r.text

    def alerts():
        with lock:
            messages = list(received)
        out = []
        for headers, body in messages:
            try:
                payload = verifier.verify(body, headers)
            except WebhookVerificationError as e:
                raise AssertionError(f"a message does not verify: {e}: {headers}") from e
            out.append((headers["webhook-id"], payload))
        return [(i, p) for i, p in out if p["type"] != "alert.test"], out

    deadline = started + 60
    while time.monotonic() < deadline and not alerts()[0]:
        time.sleep(0.2)
    elapsed = time.monotonic() - started
    time.sleep(3)  # anything more (a second instance's alert) would have come by now
    stuffing, everything = alerts()
    assert any(p["type"] == "alert.test" for _, p in everything), "no test message"
    assert len(stuffing) == 1, f"expected exactly one alert, got {stuffing}"
    msg_id, payload = stuffing[0]
    assert payload["type"] == "alert.credential_stuffing", payload
    assert payload["data"]["subject"] == "127.0.0.0/24", payload
    assert payload["data"]["accounts"] >= 10, payload
    print(
        f"one verified alert.credential_stuffing ({msg_id}) {elapsed:.1f}s after the attack "
        f"began, over two instances (shared store: {SHARED == '1'})"
    )
    server.shutdown()


if __name__ == "__main__":
    main()
