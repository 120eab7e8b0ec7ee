"""The mutual-TLS listener: CA-verified client certificates bound to the device id."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import aiohttp
import pytest
import trustme
from tests.dialects.opengate.conftest import og_device
from tests.support import running


async def test_mutual_tls_listener(tmp_path: Path) -> None:
    ca = trustme.CA()
    rogue_ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1")
    paths = {name: tmp_path / f"{name}.pem" for name in ("ca", "cert", "key")}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    server_cert.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    server_cert.private_key_pem.write_to_path(str(paths["key"]))
    settings = {
        "mtls_port": 0,
        "mtls_host": "127.0.0.1",
        "mtls_cert": str(paths["cert"]),
        "mtls_key": str(paths["key"]),
        "mtls_ca": str(paths["ca"]),
    }

    def client_context(issuer: trustme.CA, common_name: str) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(paths["ca"]))
        issuer.issue_cert(common_name=common_name).configure_cert(context)
        return context

    async with running(tmp_path, opengate=settings) as tether:
        base = tether.listeners["opengate-mtls"]
        assert base.startswith("https://127.0.0.1:")
        key = await og_device(tether, "og-m1")
        await og_device(tether, "og-m2")
        body = json.dumps({"datastreams": [{"id": "t", "datapoints": [{"value": 1}]}]}).encode()
        url = f"{base}/south/v80/devices/og-m1/collect/iot"
        headers = {"X-ApiKey": key}

        async with aiohttp.ClientSession() as session:
            # The device's own certificate: accepted.
            good = client_context(ca, "og-m1")
            async with session.post(url, data=body, headers=headers, ssl=good) as r:
                assert r.status == 201, await r.text()
            # A certificate naming another device: refused after the handshake (403).
            other = client_context(ca, "og-m2")
            async with session.post(url, data=body, headers=headers, ssl=other) as r:
                assert r.status == 403
                assert "belongs to 'og-m2'" in (await r.json())["error"]["message"]
            # X-ApiKey is still required on the mTLS listener.
            async with session.post(url, data=body, ssl=good) as r:
                assert r.status == 401
            # A certificate from another CA, or none: refused at the TLS handshake.
            for context in (
                client_context(rogue_ca, "og-m1"),
                ssl.create_default_context(cafile=str(paths["ca"])),
            ):
                with pytest.raises(aiohttp.ClientError):
                    async with session.post(url, data=body, headers=headers, ssl=context) as r:
                        await r.read()
        stored = await tether.call("GET", "/api/v1/devices/og-m1/notifications", expect=200)
        items = stored["items"] if isinstance(stored, dict) else stored
        assert len(items) == 1
