"""The web viewer over HTTPS when the node has a certificate: the session cookie is Secure, plain HTTP is refused."""

from __future__ import annotations

import http.client
import shutil
import ssl
import subprocess

import pytest
from websupport import USER


@pytest.fixture
def certificate(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a throwaway certificate")
    key, crt = tmp_path / "node.key", tmp_path / "node.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(crt),
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return key, crt


def test_https_login_sets_a_secure_session_and_plain_http_is_refused(web_node_factory, certificate):
    key, crt = certificate
    node = web_node_factory(tls_cert=crt, tls_key=key, tls_ca=crt, tls_port=0)
    assert node.web.url.startswith("https://")
    context = ssl.create_default_context(cafile=str(crt))
    c = node.client(ssl_context=context)
    assert c.get("/api/ecgs").status == 401
    ok = c.login()
    assert ok.status == 303
    cookie = ok.set_cookies[-1].lower()
    assert "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie
    assert c.get("/api/me").json()["user"] == USER
    assert c.get("/").headers["strict-transport-security"] == "max-age=31536000"  # HSTS under HTTPS only

    host, port = node.web.address
    plain = http.client.HTTPConnection(host, port, timeout=10)
    try:
        with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
            plain.request("GET", "/login")
            response = plain.getresponse()
            if response.status < 400:  # an HTTPS server must not serve the page over plain HTTP
                raise AssertionError(f"plain HTTP answered {response.status}")
            raise http.client.HTTPException(f"refused with {response.status}")
    finally:
        plain.close()
