"""`mplmm.client`: the Python client, which is the `mplmm-client` distribution (`client/`,
package `mplmm_client`, installable without the server's dependencies). This module
re-exports it where it is installed (scripts/test.sh installs it beside the server)."""

try:
    from mplmm_client import *  # noqa: F403
    from mplmm_client import __all__  # noqa: F401
except ImportError as exc:  # pragma: no cover - the message is the point
    raise ImportError(
        "mplmm.client needs the mplmm-client distribution: pip install ./client"
    ) from exc
