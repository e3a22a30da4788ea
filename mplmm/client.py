"""`mplmm.client`: the Python client, the `mplmm-client` distribution (`client/`) that
installs without the server's dependencies; the full install brings it too."""

from mplmm_client import *  # noqa: F403
from mplmm_client import __all__  # noqa: F401
