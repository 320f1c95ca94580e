"""A Dask connection's TLS security, written into the discovery registry and read back.

A kernel connected to a TLS or ``gateway://`` scheduler registers the connection
(``scatter_magics/discovery.py``) so the Jupyter sidebar can list that cluster; the
server then needs the same ``security`` to reach it. dask-gateway's ``GatewaySecurity``
holds its key and certificate only in memory, so the fields are stored as they are
(file paths or PEM text) with the class that takes them, in the registry's 0600 file,
never sent to a browser (``discovery.CREDENTIAL_FIELDS``).

>>> from distributed import Security
>>> fields = security_fields(Security(tls_ca_file="ca.pem", require_encryption=True))
>>> fields["class"], fields["args"]["tls_ca_file"]
('distributed.security:Security', 'ca.pem')
>>> type(security_from_fields(fields)).__name__
'Security'
>>> security_fields(Security()) is None   # plain tcp: nothing to keep
True
"""

from __future__ import annotations

import importlib

_TLS = ("tls_ca_file", "tls_client_cert", "tls_client_key", "tls_ciphers")
_IN_MEMORY = ("tls_key", "tls_cert")  # dask-gateway's GatewaySecurity


def security_fields(security) -> dict | None:
    """``{"class": "module:Name", "args": {...}}`` to rebuild ``security``; None if plain."""
    if security is None:
        return None
    cls = type(security)
    if all(isinstance(getattr(security, name, None), str) for name in _IN_MEMORY):
        args = {name: getattr(security, name) for name in _IN_MEMORY}
    else:
        args = {name: getattr(security, name) for name in _TLS if getattr(security, name, None)}
        if not args and not getattr(security, "require_encryption", False):
            return None
        args["require_encryption"] = bool(getattr(security, "require_encryption", False))
    return {"class": f"{cls.__module__}:{cls.__qualname__}", "args": args}


def security_from_fields(fields: dict | None):
    """The security object :func:`security_fields` described (imports its module: for
    dask-gateway that also registers its ``gateway://`` transport)."""
    if not fields:
        return None
    module, _, name = fields["class"].partition(":")
    return getattr(importlib.import_module(module), name)(**fields["args"])
