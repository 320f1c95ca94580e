"""The Jupyter server extension: REST handlers for the sidebar under ``/scatter-magics/api/``.

Enabled by the wheel's ``etc/jupyter/jupyter_server_config.d/scatter_magics.json``. Nothing
is imported until the server loads us, and a failure here is logged, never raised: an
extension that cannot load must not take the server (and every notebook) down with it
(ipyparallel #928: one import error in a server extension broke server start-up).
"""

from __future__ import annotations


def _load_jupyter_server_extension(serverapp) -> None:
    try:
        from .handlers import setup_handlers

        setup_handlers(serverapp)
    except Exception:
        serverapp.log.exception("scatter_magics: the cluster sidebar's server extension "
                                "failed to load; the server runs without it")
