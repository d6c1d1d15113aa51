"""An S3-compatible server on 127.0.0.1 for the bucket tests: moto's server mode (`ThreadedMotoServer`,
what s3fs tests itself with), and a proxy in front of it that makes the store misbehave on cue: a 503
"Slow Down" for the next writes or listings, refused credentials for one access key."""

from __future__ import annotations

import http.client
import http.server
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

#: The secret every bucket test runs with: it must never show in an output, a manifest or a report.
SECRET = "aws-secret-canary-5be1f0"
REFUSED_KEY = "AKIAREFUSEDREFUSED00"


@dataclass
class Faults:
    """What the proxy does to the next requests: counts go down as they are used."""

    slow_puts: int = 0
    slow_lists: int = 0
    #: Writes of objects refused from the nth on (0: none): a role losing its write permission mid-run.
    deny_puts_from: int = 0
    puts_seen: int = 0
    throttled: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, method: str, path: str, query: str) -> bool | str:
        with self.lock:
            if method == "PUT" and "/" in path.strip("/"):
                self.puts_seen += 1
                if self.deny_puts_from and self.puts_seen >= self.deny_puts_from:
                    return "denied"
                if self.slow_puts > 0:
                    self.slow_puts -= 1
                    self.throttled += 1
                    return True
            if method == "GET" and "list-type=2" in query and self.slow_lists > 0:
                self.slow_lists -= 1
                self.throttled += 1
                return True
        return False


SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
             b'<Message>Please reduce your request rate.</Message></Error>')
DENIED = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
          b'<Message>Access Denied</Message></Error>')
REFUSED = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InvalidAccessKeyId</Code>'
           b'<Message>The AWS Access Key Id you provided does not exist in our records.</Message></Error>')


class _Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    target: tuple[str, int]
    faults: Faults

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _any(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        if f"Credential={REFUSED_KEY}/" in (self.headers.get("Authorization") or ""):
            return self._reply(403, REFUSED)
        fault = self.faults.take(self.command, path, query)
        if fault == "denied":
            return self._reply(403, DENIED)
        if fault:
            return self._reply(503, SLOW_DOWN)
        upstream = http.client.HTTPConnection(*self.target, timeout=30)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection",)}
            upstream.request(self.command, self.path, body=body, headers=headers)
            answer = upstream.getresponse()
            data = answer.read()
            self.send_response(answer.status)
            for key, value in answer.getheaders():
                if key.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        finally:
            upstream.close()

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any


@dataclass
class S3:
    """The server (``url``: straight to moto; ``proxy_url``: through the fault proxy) and a client."""

    url: str
    proxy_url: str
    faults: Faults

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1", aws_access_key_id="testing",
                            aws_secret_access_key=SECRET)

    def env(self, *, proxy: bool = False, key: str = "testing") -> dict[str, str]:
        """What a run needs to reach the store: the standard AWS variables."""
        return {"AWS_ENDPOINT_URL": self.proxy_url if proxy else self.url, "AWS_ACCESS_KEY_ID": key,
                "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_EC2_METADATA_DISABLED": "true"}

    def reset(self) -> None:
        import httpx

        httpx.post(f"{self.url}/moto-api/reset").raise_for_status()
        self.faults.slow_puts = self.faults.slow_lists = self.faults.puts_seen = self.faults.throttled = 0
        self.faults.deny_puts_from = 0

    def upload(self, bucket: str, prefix: str, root: Path) -> list[str]:
        """Every file under ``root`` to ``bucket/prefix/<its path>``; the keys, sorted."""
        client = self.client()
        keys = []
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            key = f"{prefix}/{path.relative_to(root).as_posix()}".lstrip("/")
            client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
            keys.append(key)
        return keys

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def get(self, bucket: str, key: str) -> bytes:
        data: bytes = self.client().get_object(Bucket=bucket, Key=key)["Body"].read()
        return data


def serve() -> Iterator[S3]:
    """moto on a free port, and the proxy in front of it; both stopped at the end."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    faults = Faults()
    handler = type("Proxy", (_Proxy,), {"target": (host, port), "faults": faults})
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield S3(f"http://{host}:{port}", f"http://127.0.0.1:{proxy.server_address[1]}", faults)
    finally:
        proxy.shutdown()
        proxy.server_close()
        server.stop()
