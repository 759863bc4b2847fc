"""dev.py's installer: uv must install from the same sources, with the same version caps, as pip is configured with."""

from __future__ import annotations

import sys

import dev

PIP_CONFIG = """:env:.find-links='/opt/wheels'
global.constraint='/etc/xdg/pip/constraints.txt'
global.extra-index-url='file:///opt/pypi/simple file:///opt/pypi-more/simple'
global.find-links='/opt/wheels'
global.cert='/etc/ssl/certs/ca-certificates.crt'
user.index-url='https://mirror.example/simple'
"""


def test_pip_configuration_becomes_uv_options():
    fake_pip = [sys.executable, "-c", f"print({PIP_CONFIG!r}, end='')"]  # answers `config list` as pip would
    options = dev.pip_sources(fake_pip)
    pairs = list(zip(options[::2], options[1::2], strict=True))
    assert pairs[0] == ("--index-strategy", "unsafe-best-match")  # pip's rule: the best version any source offers
    assert sorted(pairs[1:]) == [
        ("--constraint", "/etc/xdg/pip/constraints.txt"),
        ("--extra-index-url", "file:///opt/pypi-more/simple"),
        ("--extra-index-url", "file:///opt/pypi/simple"),
        ("--find-links", "/opt/wheels"),  # once, though pip's file and its environment both name it
        ("--index-url", "https://mirror.example/simple"),
    ]  # settings uv has no use for (cert) are left out


def test_no_pip_configuration_means_uv_defaults():
    assert dev.pip_sources([sys.executable, "-c", "pass"]) == ["--index-strategy", "unsafe-best-match"]
