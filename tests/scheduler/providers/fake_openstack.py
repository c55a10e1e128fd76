"""A fake OpenStack (Keystone v3 + Nova + Glance + Neutron, only the calls scitq's
provider makes), served over HTTP on 127.0.0.1 so that the real openstacksdk talks to it.

This is a FAKE for tests: a real cloud cannot be reached here. It keeps servers in a
dictionary; knobs script failures (quota, capacity, auth, outage).
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN = "fake-token-0123456789"
AUTH_REQUIRED = "The request you have made requires authentication."
QUOTA_MESSAGE = "Quota exceeded for cores: Requested 2, but already used 100 of 100 cores"


class FakeOpenStack:
    """State of the fake cloud and its HTTP server."""

    def __init__(self) -> None:
        self.flavors = {"f-small": {"id": "f-small", "name": "b2-7", "vcpus": 2, "ram": 7000,
                                    "disk": 50}}  # fmt: skip
        self.images = {"i-debian": {"id": "i-debian", "name": "Debian 12", "status": "active"}}
        self.networks = {"n-ext": {"id": "n-ext", "name": "Ext-Net", "status": "ACTIVE"}}
        self.servers: dict[str, dict[str, Any]] = {}
        self.password = "secret"
        #: "quota": create answers 403 quota exceeded; "capacity": servers go to ERROR
        #: with "No valid host"; None: servers go ACTIVE at their second GET.
        self.create_failure: str | None = None
        self.requests: list[tuple[str, str]] = []
        self.created_bodies: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"cloud": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> FakeOpenStack:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def auth_url(self) -> str:
        return f"{self.url}/identity/v3"

    def catalog(self) -> list[dict[str, Any]]:
        def entry(kind: str, name: str, path: str) -> dict[str, Any]:
            return {"type": kind, "name": name, "id": kind, "endpoints": [
                {"id": f"{kind}-public", "interface": "public", "region": "GRA11",
                 "region_id": "GRA11", "url": f"{self.url}{path}"},
            ]}  # fmt: skip

        return [
            entry("identity", "keystone", "/identity/v3"),
            entry("compute", "nova", "/compute/v2.1"),
            entry("image", "glance", "/image"),
            entry("network", "neutron", "/network"),
        ]


class _Handler(BaseHTTPRequestHandler):
    cloud: FakeOpenStack

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    def _route(self, method: str) -> None:
        cloud = self.cloud
        parts = urlsplit(self.path)
        path, query = parts.path.rstrip("/"), parse_qs(parts.query)
        cloud.requests.append((method, self.path))
        if path == "/identity/v3/auth/tokens" and method == "POST":
            return self._token()
        if path in ("/identity", "/identity/v3"):
            return self._send(200, {"version": {"id": "v3.14", "status": "stable", "links": [
                {"rel": "self", "href": f"{cloud.url}/identity/v3/"}]}})  # fmt: skip
        if self.headers.get("X-Auth-Token") != TOKEN:
            return self._send(
                401,
                {
                    "error": {
                        "code": 401,
                        "message": AUTH_REQUIRED,
                    }
                },
            )
        if path.startswith("/compute"):
            return self._compute(method, path.removeprefix("/compute"), query)
        if path.startswith("/image"):
            return self._listing("/image", path.removeprefix("/image"), "/v2/images", "images",
                                 cloud.images, query)  # fmt: skip
        if path.startswith("/network"):
            return self._listing(
                "/network",
                path.removeprefix("/network"),
                "/v2.0/networks",
                "networks",
                cloud.networks,
                query,
            )
        return self._send(404, {"error": "not found"})

    def _token(self) -> None:
        body = self._body()
        password = body["auth"]["identity"]["password"]["user"]["password"]
        if password != self.cloud.password:
            return self._send(401, {"error": {"code": 401, "title": "Unauthorized",
                                              "message": AUTH_REQUIRED}})  # fmt: skip
        token = {"token": {
            "methods": ["password"], "expires_at": "2099-01-01T00:00:00.000000Z",
            "issued_at": "2020-01-01T00:00:00.000000Z",
            "user": {"id": "u1", "name": "scitq", "domain": {"id": "default", "name": "Default"}},
            "project": {"id": "p1", "name": "lab", "domain": {"id": "default", "name": "Default"}},
            "roles": [{"id": "r1", "name": "member"}],
            "catalog": self.cloud.catalog(),
        }}  # fmt: skip
        self._send(201, token, {"X-Subject-Token": TOKEN})

    def _listing(
        self,
        service: str,
        path: str,
        prefix: str,
        key: str,
        items: dict[str, Any],
        query: dict[str, list[str]],
    ) -> None:
        if path in ("", "/"):
            version = prefix.strip("/").split("/")[0]
            href = f"{self.cloud.url}{service}/{version}/"
            links = [{"rel": "self", "href": href}]
            return self._send(
                200, {"versions": [{"id": version, "status": "CURRENT", "links": links}]}
            )
        if path == prefix:
            found = [
                i for i in items.values() if "name" not in query or i["name"] == query["name"][0]
            ]
            return self._send(200, {key: found})
        match = re.fullmatch(re.escape(prefix) + r"/([^/]+)", path)
        if match and match.group(1) in items:
            return self._send(
                200, items[match.group(1)] if key == "images" else {key[:-1]: items[match.group(1)]}
            )
        return self._send(404, {"error": "not found"})

    def _compute(self, method: str, path: str, query: dict[str, list[str]]) -> None:
        cloud = self.cloud
        if path in ("", "/v2.1"):
            links = [{"rel": "self", "href": cloud.url + "/compute/v2.1/"}]
            version = {"id": "v2.1", "status": "CURRENT", "version": "2.90", "min_version": "2.1",
                       "links": links}  # fmt: skip
            return self._send(200, {"version": version} if path else {"versions": [version]})
        path = path.removeprefix("/v2.1")
        if path in ("/flavors", "/flavors/detail"):
            return self._send(200, {"flavors": list(cloud.flavors.values())})
        if match := re.fullmatch(r"/flavors/([^/]+)", path):
            if match.group(1) in cloud.flavors:
                return self._send(200, {"flavor": cloud.flavors[match.group(1)]})
            return self._send(
                404, {"itemNotFound": {"code": 404, "message": "Flavor could not be found."}}
            )
        if path == "/servers" and method == "POST":
            return self._create_server()
        if path in ("/servers", "/servers/detail") and method == "GET":
            return self._send(
                200, {"servers": [self._server_view(s) for s in cloud.servers.values()]}
            )
        if match := re.fullmatch(r"/servers/([^/]+)", path):
            server = cloud.servers.get(match.group(1))
            if server is None:
                return self._send(
                    404, {"itemNotFound": {"code": 404, "message": "Instance could not be found."}}
                )
            if method == "DELETE":
                del cloud.servers[server["id"]]
                return self._send(204)
            server["polls"] += 1
            if server["status"] == "BUILD" and server["polls"] >= 2:
                server["status"] = "ERROR" if cloud.create_failure == "capacity" else "ACTIVE"
            return self._send(200, {"server": self._server_view(server)})
        return self._send(404, {"error": f"no route {path}"})

    def _create_server(self) -> None:
        cloud = self.cloud
        body = self._body()["server"]
        cloud.created_bodies.append(body)
        if cloud.create_failure == "quota":
            return self._send(403, {"forbidden": {"code": 403, "message":
                QUOTA_MESSAGE}})  # fmt: skip
        if body.get("flavorRef") not in cloud.flavors:
            return self._send(
                400, {"badRequest": {"code": 400, "message": "Flavor could not be found"}}
            )
        server_id = str(uuid.uuid4())
        cloud.servers[server_id] = {"id": server_id, "name": body["name"], "status": "BUILD",
                                    "metadata": body.get("metadata", {}), "polls": 0,
                                    "flavor": {"id": body["flavorRef"]}}  # fmt: skip
        self._send(202, {"server": {"id": server_id, "links": [], "adminPass": "x"}})

    def _server_view(self, server: dict[str, Any]) -> dict[str, Any]:
        view = {key: value for key, value in server.items() if key != "polls"}
        if server["status"] == "ERROR":
            view["fault"] = {
                "code": 500,
                "message": "No valid host was found. There are not enough hosts available.",
            }
        return view
