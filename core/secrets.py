"""What looks like a credential: the one copy of the patterns, for endpoint settings and templates alike.

Secrets are never values in a config: :func:`find_inline_secrets` finds anything that looks like
one outside a secret reference (``…_env`` / ``…_file``): a key named like a secret, a URL with
``user:pass@`` or a ``token=``/``key=`` query parameter, an ``Authorization``-style header, a value
of the form ``Bearer …``/``Basic …``, a JWT, a PEM private key, a well-known API-key prefix.
"""

from __future__ import annotations

import re

SECRET_REF = re.compile(r"_(env|file)$")  # a setting that names where a secret is
SECRET_KEY = re.compile(r"(secret|passw(or)?d|passwd|api[_-]?key|token|credential|private[_-]?key)", re.I)
SECRET_HEADER = re.compile(r"^(authorization|proxy-authorization|cookie|x-api-key|api-key|apikey|"
                           r".*(token|secret|passw|api[_-]?key|auth).*)$", re.I)
SECRET_VALUE = [
    (re.compile(r"^\s*(bearer|basic|digest|token|apikey|sharedaccesssignature)\s+\S{6,}", re.I),
     "an Authorization value"),
    (re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\."), "a JWT"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), "a private key"),
    (re.compile(r"\b(sk_live_|sk_test_|rk_live_|xox[abpr]-|ghp_|gho_|github_pat_|AKIA[0-9A-Z]{12}|AIza[0-9A-Za-z_-]{20})"),
     "an API key"),
]
URL_USERINFO = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@\s]*:[^/@\s]*@", re.I)
URL_SECRET_PARAM = re.compile(r"[?&](access_token|token|api[_-]?key|key|secret|password|sig|signature|"
                              r"client_secret|auth)=[^&]+", re.I)


def find_inline_secrets(settings: dict, path: str = "settings") -> list[tuple[str, str]]:
    """``(field path, what it looks like)`` for every credential found outside a secret reference."""
    found = _find(settings, path)
    return [f for i, f in enumerate(found) if f[0] not in {g[0] for g in found[:i]}]


def _find(settings: dict, path: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for k, v in settings.items():
        where = f"{path}.{k}"
        is_ref = isinstance(k, str) and SECRET_REF.search(k)
        if isinstance(k, str) and SECRET_KEY.search(k) and not is_ref:
            found.append((where, f"a secret setting; name where it is instead ({k}_env or {k}_file)"))
            continue
        if isinstance(v, dict):
            if k == "headers":
                for hk in v:
                    if isinstance(hk, str) and SECRET_HEADER.match(hk):
                        found.append((f"{where}.{hk}", "a header that carries a credential; put such headers "
                                                       "in headers_env or headers_file"))
            found += _find(v, where)
        elif isinstance(v, (list, tuple)):
            for i, item in enumerate(v):
                if isinstance(item, dict):
                    found += _find(item, f"{where}[{i}]")
                elif isinstance(item, str):
                    found += secret_value(f"{where}[{i}]", item)
        elif isinstance(v, str) and not is_ref:
            found += secret_value(where, v)
    return found


def secret_value(where: str, v: str) -> list[tuple[str, str]]:
    if URL_USERINFO.match(v):
        return [(where, "a URL with a user name and password in it; use the provider's credential settings")]
    if URL_SECRET_PARAM.search(v):
        return [(where, "a URL with a credential in its query string")]
    for rx, what in SECRET_VALUE:
        if rx.search(v):
            return [(where, f"{what}; name where it is instead (an …_env or …_file setting)")]
    return []
